/// What the SCTP DTLS chunk of a connection's association has agreed and counted: the draft's "Get
/// Agreed DTLS Key Management Method and Role" and its counters, read-only.
public struct DTLSChunkStatus: Sendable, Equatable {
    /// Nil when no DTLS chunk was agreed (loose mode with a plain peer).
    public let agreement: DTLSChunkAgreement?
    /// Whether only protected packets are accepted now ("Require Protected SCTP Packets").
    public let requiresProtection: Bool
    /// Association-wide packet counters.
    public let counters: DTLSChunkCounters
    /// Per key context: AEAD encryptions, decryptions, failed decryptions, replays.
    public let epochCounters: [DTLSKeyContextID: DTLSEpochCounters]
    /// The key context new packets go out under; its epoch advances with every rekey.
    public let sendKeyContext: DTLSKeyContextID?
    /// Key management connections that replaced the keys since the first (DTLS 1.3 or TLS 1.3 method).
    public let rekeys: Int
}

extension Connection {
    /// The DTLS chunk of this connection's association (stack dtls-chunk-sctp); nil on other stacks.
    /// Every connection of the association reads the same figures.
    public var dtlsChunkStatus: DTLSChunkStatus? {
        layer.layerChain.lazy.compactMap { ($0 as? SCTPStreamLayer)?.association.dtlsChunkStatus }.first
    }
}

extension Connection {
    /// dtls-chunk-sctp with DTLS 1.3 or TLS 1.3 key management: this end's restart key context, as bytes to
    /// keep somewhere safe and give to `SecurityParameters.dtlsChunkRestartContext` if this process
    /// dies and must restart the association (draft-ietf-tsvwg-sctp-dtls-chunk, "SCTP Restart
    /// Considerations"). It holds traffic keys: store it as securely as a private key. Each rekey
    /// replaces it, so export it again after every `keysUpdated` event. `notSupported` on other
    /// stacks and with pre-shared parameters.
    public func exportRestartContext() throws -> [UInt8] {
        guard let association = layer.layerChain.lazy.compactMap({ ($0 as? SCTPStreamLayer)?.association }).first else {
            throw TransportError.notSupported("only dtls-chunk-sctp has a restart key context")
        }
        return try association.exportRestartContext()
    }
}
