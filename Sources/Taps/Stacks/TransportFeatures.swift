/// What a protocol stack provides, matched against selection properties (RFC 9622 section 6.2).
public struct TransportFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let reliableTransfer = TransportFeatures(rawValue: 1 << 0)
    public static let messageBoundaries = TransportFeatures(rawValue: 1 << 1)
    public static let perMessageReliability = TransportFeatures(rawValue: 1 << 2)
    public static let orderedDelivery = TransportFeatures(rawValue: 1 << 3)
    public static let zeroRTT = TransportFeatures(rawValue: 1 << 4)
    public static let multistreaming = TransportFeatures(rawValue: 1 << 5)
    public static let fullChecksumSend = TransportFeatures(rawValue: 1 << 6)
    public static let fullChecksumReceive = TransportFeatures(rawValue: 1 << 7)
    public static let congestionControl = TransportFeatures(rawValue: 1 << 8)
    public static let keepAlive = TransportFeatures(rawValue: 1 << 9)
    public static let softErrorNotify = TransportFeatures(rawValue: 1 << 10)
    public static let activeReadBeforeSend = TransportFeatures(rawValue: 1 << 11)
    public static let multipath = TransportFeatures(rawValue: 1 << 12)

    static let names: [(TransportFeatures, String)] = [
        (.reliableTransfer, "reliable"), (.messageBoundaries, "message-boundaries"),
        (.perMessageReliability, "per-message-reliability"), (.orderedDelivery, "ordered"), (.zeroRTT, "0-rtt"),
        (.multistreaming, "multistreaming"), (.fullChecksumSend, "checksum-send"), (.fullChecksumReceive, "checksum-recv"),
        (.congestionControl, "congestion-control"), (.keepAlive, "keep-alive"), (.softErrorNotify, "soft-errors"),
        (.activeReadBeforeSend, "read-before-send"), (.multipath, "multipath"),
    ]

    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
}

/// A security protocol as the registry knows it: its name, versions and the RFC 8922 interfaces this
/// implementation exposes for it.
public struct SecurityProtocol: Sendable, Hashable {
    public let name: String
    public let versions: Set<SecurityParameters.ProtocolVersion>
    public let interfaces: SecurityInterface

    /// TLS 1.3 / 1.2 through OpenSSL. Interfaces here are those with an API call and a test.
    public static let tls = SecurityProtocol(
        name: "TLS", versions: [.tls12, .tls13],
        interfaces: [.identitiesAndPrivateKeys, .algorithms, .extensions, .sessionCache, .preSharedKeyImport, .identityValidation,
                     .connectionTermination, .keyUpdate, .sharedSecretKeyExport])

    /// DTLS 1.2 through OpenSSL, with the cookie exchange.
    public static let dtls = SecurityProtocol(
        name: "DTLS", versions: [.dtls12],
        interfaces: [.identitiesAndPrivateKeys, .algorithms, .extensions, .sessionCache, .preSharedKeyImport, .identityValidation,
                     .sourceAddressValidation, .connectionTermination, .sharedSecretKeyExport])

    /// The SCTP DTLS chunk (draft-ietf-tsvwg-sctp-dtls-chunk): DTLS 1.3 record protection of every
    /// SCTP packet. Its DTLS 1.3 key management authenticates both ends with certificates (IPK);
    /// with pre-shared parameters (KMId 0) the application imports the keys (PSKI) and chooses the
    /// cipher suite with them (ALG).
    public static let dtlsChunk = SecurityProtocol(
        name: "DTLS chunk", versions: [.dtls13], interfaces: [.identitiesAndPrivateKeys, .preSharedKeyImport, .algorithms, .keyUpdate])
}
