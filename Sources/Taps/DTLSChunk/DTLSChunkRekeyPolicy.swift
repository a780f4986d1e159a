/// When the DTLS chunk's key management replaces its keys by a new key management connection
/// (draft-westerlund-tsvwg-sctp-dtls-handshake, "Rekeying"): after so many bytes or packets sent
/// under one key context, or after so long, whichever comes first, and always before the AEAD limit
/// of the suite. `Connection.updateKeys()` rekeys at once. Each end counts what it sends.
public struct DTLSChunkRekeyPolicy: Sendable, Hashable {
    /// Plaintext bytes protected under one send key context; the draft's example policy is 100 GB.
    public var afterBytes: Int? = 100_000_000_000
    /// Packets protected under one send key context (the suite's AEAD limit applies in any case).
    public var afterPackets: Int? = nil
    /// Age of a key context; the draft's example policy is one hour.
    public var afterTime: Duration? = .seconds(3600)
    /// How long the old key management connection may stay once the new keys are in use, when the
    /// drain rule (a packet received under the new keys, everything sent under the old ones
    /// acknowledged) does not end it sooner: one Maximum Segment Lifetime.
    public var drainLimit: Duration = .seconds(120)

    /// A policy with the given limits; nil turns a limit off.
    public init(afterBytes: Int? = 100_000_000_000, afterPackets: Int? = nil, afterTime: Duration? = .seconds(3600),
                drainLimit: Duration = .seconds(120)) {
        self.afterBytes = afterBytes
        self.afterPackets = afterPackets
        self.afterTime = afterTime
        self.drainLimit = drainLimit
    }

    /// Never by count or age: only `updateKeys()` and the AEAD limits rekey.
    public static let onDemand = DTLSChunkRekeyPolicy(afterBytes: nil, afterPackets: nil, afterTime: nil)

    /// The packets one send context may protect under this policy and the suite.
    func packetBudget(for suite: DTLSChunkCipherSuite) -> Int {
        min(afterPackets ?? .max, suite.confidentialityLimit)
    }

    func validate() throws(TransportError) {
        if let afterBytes, afterBytes <= 0 { throw .invalidArgument("dtlsChunkRekey.afterBytes must be positive, not \(afterBytes)") }
        if let afterPackets, afterPackets <= 0 { throw .invalidArgument("dtlsChunkRekey.afterPackets must be positive, not \(afterPackets)") }
        if let afterTime, afterTime <= .zero { throw .invalidArgument("dtlsChunkRekey.afterTime must be positive, not \(afterTime)") }
        guard drainLimit > .zero else { throw .invalidArgument("dtlsChunkRekey.drainLimit must be positive, not \(drainLimit)") }
    }
}

extension DTLSChunkCipherSuite {
    /// Records one key may protect (RFC 9147 section 4.5.3, RFC 8446 section 5.5): 2^24.5 full-size
    /// records for AES-GCM, taken as 2^24 here; ChaCha20-Poly1305's limit exceeds any 64-bit
    /// sequence number this side of the chunk's 2^48.
    var confidentialityLimit: Int {
        switch self {
        case .aes128GCMSHA256, .aes256GCMSHA384: 1 << 24
        case .chacha20Poly1305SHA256: 1 << 48
        }
    }
}
