@_implementationOnly import CNIOBoringSSL

/// The DTLS 1.3 wire version (RFC 9147 section 5.3): 0xfefc.
public let dtls13Version = UInt16(DTLS1_3_VERSION)
