/// What a protocol stack provides, matched against selection properties (RFC 9622 section 6.2).
public struct TransportFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Every message arrives, or the connection fails (RFC 9622 section 6.2.1).
    public static let reliableTransfer = TransportFeatures(rawValue: 1 << 0)
    /// Messages arrive as they were sent, not merged or split (6.2.2).
    public static let messageBoundaries = TransportFeatures(rawValue: 1 << 1)
    /// Individual messages may be sent unreliably (6.2.3).
    public static let perMessageReliability = TransportFeatures(rawValue: 1 << 2)
    /// Messages arrive in the order they were sent (6.2.4).
    public static let orderedDelivery = TransportFeatures(rawValue: 1 << 3)
    /// Data may go with the handshake's first flight (6.2.5).
    public static let zeroRTT = TransportFeatures(rawValue: 1 << 4)
    /// Several connections share one association, as streams (6.2.6).
    public static let multistreaming = TransportFeatures(rawValue: 1 << 5)
    /// Sent data is covered by a full checksum (6.2.7).
    public static let fullChecksumSend = TransportFeatures(rawValue: 1 << 6)
    /// Received data is checked against a full checksum (6.2.8).
    public static let fullChecksumReceive = TransportFeatures(rawValue: 1 << 7)
    /// The stack controls its sending rate against congestion (6.2.9).
    public static let congestionControl = TransportFeatures(rawValue: 1 << 8)
    /// The stack can probe an idle peer (6.2.10).
    public static let keepAlive = TransportFeatures(rawValue: 1 << 9)
    /// ICMP and similar soft errors reach the application (6.2.17).
    public static let softErrorNotify = TransportFeatures(rawValue: 1 << 10)
    /// A listener-side connection may receive before it sends (6.2.18).
    public static let activeReadBeforeSend = TransportFeatures(rawValue: 1 << 11)
    /// The stack can use several paths at once (6.2.14).
    public static let multipath = TransportFeatures(rawValue: 1 << 12)

    static let names: [(TransportFeatures, String)] = [
        (.reliableTransfer, "reliable"), (.messageBoundaries, "message-boundaries"),
        (.perMessageReliability, "per-message-reliability"), (.orderedDelivery, "ordered"), (.zeroRTT, "0-rtt"),
        (.multistreaming, "multistreaming"), (.fullChecksumSend, "checksum-send"), (.fullChecksumReceive, "checksum-recv"),
        (.congestionControl, "congestion-control"), (.keepAlive, "keep-alive"), (.softErrorNotify, "soft-errors"),
        (.activeReadBeforeSend, "read-before-send"), (.multipath, "multipath"),
    ]

    /// The short names of the features in the set, as `candidateStacks()` reports them.
    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
}

/// A security protocol as the registry knows it: its name, versions and the RFC 8922 interfaces this
/// implementation exposes for it.
public struct SecurityProtocol: Sendable, Hashable {
    /// The protocol's name, as reports and `SecurityDetails` give it.
    public let name: String
    /// The versions this implementation offers.
    public let versions: Set<SecurityParameters.ProtocolVersion>
    /// The RFC 8922 interfaces this implementation exposes for the protocol.
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
    /// SCTP packet. Its DTLS 1.3 key management authenticates both ends with certificates (IPK),
    /// which a trust verifier may decide on (IV), resumes sessions of earlier associations (CM),
    /// rekeys (KU) and exports keying material (SSKE);
    /// with pre-shared parameters (KMId 0) the application imports the keys (PSKI) and chooses the
    /// cipher suite with them (ALG). With either, the association ends only by a SHUTDOWN or ABORT
    /// under the keys (CT).
    public static let dtlsChunk = SecurityProtocol(
        name: "DTLS chunk", versions: [.dtls13],
        interfaces: [.identitiesAndPrivateKeys, .preSharedKeyImport, .algorithms, .sessionCache, .identityValidation,
                     .connectionTermination, .keyUpdate, .sharedSecretKeyExport])
}
