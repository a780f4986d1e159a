import TapsDTLS13

/// The TLS 1.3 cipher suites the DTLS chunk protects with (draft-ietf-tsvwg-sctp-dtls-chunk,
/// "Mandatory-to-Implement Cipher Suites"): AES-128-GCM is mandatory, the other two are the SHOULDs.
/// Raw values are the IANA TLS cipher suite identifiers.
public enum DTLSChunkCipherSuite: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// TLS_AES_128_GCM_SHA256: mandatory to implement.
    case aes128GCMSHA256 = 0x1301
    /// TLS_AES_256_GCM_SHA384.
    case aes256GCMSHA384 = 0x1302
    /// TLS_CHACHA20_POLY1305_SHA256.
    case chacha20Poly1305SHA256 = 0x1303

    /// The IANA name, as key files and logs spell it.
    public var description: String {
        switch self {
        case .aes128GCMSHA256: "TLS_AES_128_GCM_SHA256"
        case .aes256GCMSHA384: "TLS_AES_256_GCM_SHA384"
        case .chacha20Poly1305SHA256: "TLS_CHACHA20_POLY1305_SHA256"
        }
    }

    /// The suite of an IANA name such as `TLS_AES_128_GCM_SHA256`; nil for any other name.
    public init?(name: String) {
        guard let suite = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = suite
    }

    /// Record payload key length in bytes; the sequence-number key has the same length
    /// (RFC 9147 section 4.2.3).
    public var keyLength: Int { self == .aes128GCMSHA256 ? 16 : 32 }
    /// The per-record nonce is the IV XOR the sequence number (RFC 8446 section 5.3).
    public var ivLength: Int { 12 }
    /// The sequence-number key length in bytes: the record key's.
    public var sequenceNumberKeyLength: Int { keyLength }
    /// Every suite here has a 16-byte authentication tag.
    static let tagLength = 16

    /// The hash of the suite's HKDF (RFC 8446 section 7.1).
    var digestName: String { self == .aes256GCMSHA384 ? "SHA384" : "SHA256" }
    /// That hash's output length: a traffic secret's.
    var hashLength: Int { self == .aes256GCMSHA384 ? 48 : 32 }

    /// The AEAD that protects records under this suite.
    var recordAlgorithm: RecordAEAD.Algorithm {
        switch self {
        case .aes128GCMSHA256: .aes128GCM
        case .aes256GCMSHA384: .aes256GCM
        case .chacha20Poly1305SHA256: .chacha20Poly1305
        }
    }
}

/// The key material for one direction of one DTLS key context (the draft's "Key Material"): record
/// payload key, IV and sequence-number key, as the socket API's `sctp_dtls_keys` carries them.
public struct DTLSChunkKeyMaterial: Sendable, Hashable {
    /// The record payload key.
    public var key: [UInt8]
    /// The IV the per-record nonce is made from.
    public var iv: [UInt8]
    /// The key that encrypts record sequence numbers (RFC 9147 section 4.2.3).
    public var sequenceNumberKey: [UInt8]

    /// Key material of the given parts; `validate(for:)` checks their lengths.
    public init(key: [UInt8], iv: [UInt8], sequenceNumberKey: [UInt8]) {
        self.key = key
        self.iv = iv
        self.sequenceNumberKey = sequenceNumberKey
    }

    /// Checks the lengths against the suite, before any packet depends on them.
    public func validate(for suite: DTLSChunkCipherSuite) throws(TransportError) {
        guard key.count == suite.keyLength else {
            throw .invalidArgument("\(suite) takes a \(suite.keyLength)-byte key, not \(key.count) bytes")
        }
        guard iv.count == suite.ivLength else {
            throw .invalidArgument("\(suite) takes a \(suite.ivLength)-byte IV, not \(iv.count) bytes")
        }
        guard sequenceNumberKey.count == suite.sequenceNumberKeyLength else {
            throw .invalidArgument("\(suite) takes a \(suite.sequenceNumberKeyLength)-byte sequence-number key, not \(sequenceNumberKey.count) bytes")
        }
    }

    /// The DTLS 1.3 traffic keys of a traffic secret (RFC 9147 section 5.9 and RFC 8446 section 7.3,
    /// with the "dtls13" label prefix): key, iv and sn.
    public static func derive(fromTrafficSecret secret: [UInt8], suite: DTLSChunkCipherSuite) throws(TransportError) -> DTLSChunkKeyMaterial {
        let hkdf = HKDFExpandLabel(digest: suite.digestName, prefix: "dtls13")
        return DTLSChunkKeyMaterial(
            key: try hkdf.expand(secret: secret, label: "key", length: suite.keyLength),
            iv: try hkdf.expand(secret: secret, label: "iv", length: suite.ivLength),
            sequenceNumberKey: try hkdf.expand(secret: secret, label: "sn", length: suite.sequenceNumberKeyLength))
    }

    /// The TLS 1.3 record keys of a traffic secret (RFC 8446 section 7.3, "tls13 " prefix): key and
    /// iv. TLS numbers its records implicitly and has no sequence-number key; the record key stands
    /// in for the one `RecordCipher` keeps, which a TLS record never uses.
    static func deriveTLS13(fromTrafficSecret secret: [UInt8], suite: DTLSChunkCipherSuite) throws(TransportError) -> DTLSChunkKeyMaterial {
        let hkdf = HKDFExpandLabel(digest: suite.digestName, prefix: "tls13 ")
        let key = try hkdf.expand(secret: secret, label: "key", length: suite.keyLength)
        return DTLSChunkKeyMaterial(key: key, iv: try hkdf.expand(secret: secret, label: "iv", length: suite.ivLength), sequenceNumberKey: key)
    }
}
