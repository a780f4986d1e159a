/// Identifies one DTLS key context of an association (draft-ietf-tsvwg-sctp-dtls-chunk, "DTLS
/// Considerations"): the restart indicator and the DTLS epoch.
public struct DTLSKeyContextID: Hashable, Sendable, CustomStringConvertible {
    /// True for the restart key context, false for the primary one.
    public var restart: Bool
    /// The DTLS epoch of the context; 3 is the first traffic epoch, and each rekey adds one.
    public var epoch: UInt64

    /// The context of `epoch`, primary unless `restart`.
    public init(restart: Bool = false, epoch: UInt64) {
        self.restart = restart
        self.epoch = epoch
    }

    /// `primary epoch N` or `restart epoch N`.
    public var description: String { "\(restart ? "restart" : "primary") epoch \(epoch)" }
}

/// The counters the draft's abstract API reads per key context ("Get AEAD Encryption Invocations"
/// and its two siblings).
public struct DTLSEpochCounters: Sendable, Equatable {
    /// AEAD encryptions (packets protected).
    public var encryptions = 0
    /// AEAD decryptions that authenticated.
    public var decryptions = 0
    /// AEAD decryptions that failed.
    public var failedDecryptions = 0
    /// Records dropped as replays.
    public var replaysDropped = 0

    mutating func add(_ other: DTLSEpochCounters) {
        encryptions += other.encryptions
        decryptions += other.decryptions
        failedDecryptions += other.failedDecryptions
        replaysDropped += other.replaysDropped
    }
}

/// The association-wide counters (the socket API's `sctp_dtls_stats`, and what the draft asks to be
/// dropped and counted).
public struct DTLSChunkCounters: Sendable, Equatable {
    /// DTLS chunks sent (`sds_sent_protected`).
    public var sentProtected = 0
    /// DTLS chunks that authenticated and were passed on (`sds_recv_protected`).
    public var receivedProtected = 0
    /// DTLS chunks that did not authenticate (`sds_aead_failures`).
    public var aeadFailures = 0
    /// DTLS chunks whose sequence number was already seen or is older than the replay window.
    public var replaysDropped = 0
    /// Plain packets dropped after protection was required (`sds_dropped_unprotected`).
    public var droppedUnprotected = 0
    /// Packets whose DTLS chunk is bundled with other chunks, or whose chunk or record is malformed.
    public var malformedDropped = 0
    /// DTLS chunks for a key context that is not installed (unknown epoch, or restart keys absent).
    public var noKeyDropped = 0
    /// COOKIE ECHOs of a peer's restart that authenticated under a restart context but were
    /// refused: no protected restart was agreed, or the restart would change the method or role.
    public var restartsRefused = 0

    /// Every packet dropped, for whatever reason above.
    public var packetsDropped: Int { aeadFailures + replaysDropped + droppedUnprotected + malformedDropped + noKeyDropped + restartsRefused }
}

/// The Chunk Protection Operator of draft-ietf-tsvwg-sctp-dtls-chunk: it turns the chunks of an
/// outgoing SCTP packet into one DTLS chunk (type 0x41) holding one DTLS 1.3 DTLSCiphertext, and an
/// incoming one back, with a replay window per epoch. Sans-I/O: packets in, packets out, counters;
/// it knows nothing of usrsctp or sockets. Its key operations are the draft's "Abstract API".
struct DTLSChunkProtection {
    static let chunkType: UInt8 = 0x41
    /// The R flag: protected with a restart key context.
    static let restartFlag: UInt8 = 0x01
    static let initChunkType: UInt8 = 1
    static let initAckChunkType: UInt8 = 2
    /// Chunk header (4), pre-padding (1), unified header (3).
    static let headerOverhead = 4 + 1 + DTLSRecord.UnifiedHeader.chunkLength
    /// The most a protected packet is longer than the plain one: the headers above, the inner
    /// content type, the tag and up to 3 bytes of padding.
    static let maximumOverhead = headerOverhead + 1 + DTLSChunkCipherSuite.tagLength + 3
    /// DTLS records carry at most 2^14 bytes of plaintext (RFC 9147 section 4, RFC 8446 section 5.1).
    static let maximumPlaintext = 1 << 14

    /// One installed key context's state for one direction. Classes, so a packet updates its
    /// context in place rather than through a dictionary.
    private final class SendContext {
        let cipher: RecordCipher
        var nextSequence: UInt64 = 0
        var counters = DTLSEpochCounters()
        init(cipher: RecordCipher) { self.cipher = cipher }
    }

    private final class ReceiveContext {
        let id: DTLSKeyContextID
        let cipher: RecordCipher
        var window: ReplayWindow
        var counters = DTLSEpochCounters()
        init(id: DTLSKeyContextID, cipher: RecordCipher, window: ReplayWindow) {
            self.id = id
            self.cipher = cipher
            self.window = window
        }
    }

    private var sendContexts: [DTLSKeyContextID: SendContext] = [:]
    private var receiveContexts: [DTLSKeyContextID: ReceiveContext] = [:]
    /// The receive context for each R flag and pair of epoch bits a record can carry (index
    /// restart * 4 + epoch & 3): the newest installed epoch with those bits.
    private var receiveSlots: [ReceiveContext?] = Array(repeating: nil, count: 8)
    /// Counters of key contexts destroyed since.
    private var retiredCounters: [DTLSKeyContextID: DTLSEpochCounters] = [:]
    /// The send context new packets use ("Set Key to Use").
    private(set) var sendKeyInUse: DTLSKeyContextID?
    private var sendInUse: SendContext?
    /// The newest primary epochs installed each way: the next must be one more (the first is 3).
    private var lastPrimarySendEpoch: UInt64?
    private var lastPrimaryReceiveEpoch: UInt64?
    /// "Require Protected SCTP Packets": once on, it stays on.
    private(set) var requiresProtection = false
    /// "Configure Replay Protection": the window of every receive context installed from now on.
    private(set) var replayWindowSize = 64
    private(set) var counters = DTLSChunkCounters()
    /// The newest primary epoch a packet of the peer authenticated under: once it is a new
    /// context's, the peer has that context's keys.
    private(set) var newestPeerPrimaryEpoch: UInt64 = 0
    /// The restart context the last packet with the R flag opened under.
    private(set) var lastRestartContextOpened: DTLSKeyContextID?

    /// Told of every key context direction installed (the key log).
    var onKeysEstablished: ((_ context: DTLSKeyContextID, _ sending: Bool, DTLSChunkCipherSuite, DTLSChunkKeyMaterial) -> Void)?

    /// The per-key-context counters, of contexts installed now or before.
    var epochCounters: [DTLSKeyContextID: DTLSEpochCounters] {
        var all = retiredCounters
        for (id, context) in sendContexts { all[id, default: DTLSEpochCounters()].add(context.counters) }
        for (id, context) in receiveContexts { all[id, default: DTLSEpochCounters()].add(context.counters) }
        return all
    }

    private mutating func retire(_ id: DTLSKeyContextID, _ counters: DTLSEpochCounters) {
        retiredCounters[id, default: DTLSEpochCounters()].add(counters)
    }

    private mutating func refreshReceiveSlots() {
        receiveSlots = Array(repeating: nil, count: 8)
        for (id, context) in receiveContexts {
            let slot = (id.restart ? 4 : 0) + Int(id.epoch & 3)
            if let current = receiveSlots[slot], current.id.epoch > id.epoch { continue }
            receiveSlots[slot] = context
        }
    }

    /// The first primary epoch of an association (draft "DTLS Considerations").
    static let firstEpoch: UInt64 = 3

    init() {}

    // MARK: The abstract API (draft section "Abstract API")

    /// Cipher suites this operator can protect with ("Cipher Suite Capabilities").
    static var cipherSuites: [DTLSChunkCipherSuite] { DTLSChunkCipherSuite.allCases }

    /// "Establish Send Key Material". Primary keys are put to use at once (the draft lets this call
    /// stand in for "Set Key to Use"); restart keys wait for an explicit `useSendKeys`.
    mutating func establishSendKeys(_ keys: DTLSChunkKeyMaterial, suite: DTLSChunkCipherSuite, for context: DTLSKeyContextID) throws(TransportError) {
        if !context.restart { try Self.checkNextPrimary(context.epoch, after: lastPrimarySendEpoch, direction: "send") }
        guard sendContexts[context] == nil else { throw .invalidArgument("send keys for \(context) are already installed") }
        sendContexts[context] = SendContext(cipher: try RecordCipher(suite: suite, keys: keys, sealing: true))
        onKeysEstablished?(context, true, suite, keys)
        if !context.restart {
            lastPrimarySendEpoch = context.epoch
            sendKeyInUse = context
            sendInUse = sendContexts[context]
        }
    }

    /// "Establish Receive Key Material". Several receive epochs may be installed at once, so packets
    /// of the old epoch still in flight are read while the peer moves to the new one.
    mutating func establishReceiveKeys(_ keys: DTLSChunkKeyMaterial, suite: DTLSChunkCipherSuite, for context: DTLSKeyContextID) throws(TransportError) {
        if !context.restart { try Self.checkNextPrimary(context.epoch, after: lastPrimaryReceiveEpoch, direction: "receive") }
        guard receiveContexts[context] == nil else { throw .invalidArgument("receive keys for \(context) are already installed") }
        let cipher = try RecordCipher(suite: suite, keys: keys, sealing: false)
        receiveContexts[context] = ReceiveContext(id: context, cipher: cipher, window: ReplayWindow(size: replayWindowSize))
        onKeysEstablished?(context, false, suite, keys)
        refreshReceiveSlots()
        if !context.restart { lastPrimaryReceiveEpoch = context.epoch }
    }

    private static func checkNextPrimary(_ epoch: UInt64, after last: UInt64?, direction: String) throws(TransportError) {
        let expected = last.map { $0 + 1 } ?? firstEpoch
        guard epoch == expected else {
            throw .invalidArgument("the next primary \(direction) epoch is \(expected), not \(epoch) (the first is 3, then each one more)")
        }
    }

    /// "Destroy Send Key Material". Destroying the keys in use stops protection of outgoing packets
    /// until others are put to use.
    @discardableResult
    mutating func destroySendKeys(for context: DTLSKeyContextID) -> Bool {
        guard let removed = sendContexts.removeValue(forKey: context) else { return false }
        retire(context, removed.counters)
        if sendKeyInUse == context {
            sendKeyInUse = nil
            sendInUse = nil
        }
        return true
    }

    /// "Destroy Receive Key Material".
    @discardableResult
    mutating func destroyReceiveKeys(for context: DTLSKeyContextID) -> Bool {
        guard let removed = receiveContexts.removeValue(forKey: context) else { return false }
        retire(context, removed.counters)
        refreshReceiveSlots()
        return true
    }

    /// "Set Key to Use".
    mutating func useSendKeys(_ context: DTLSKeyContextID) -> Bool {
        guard let chosen = sendContexts[context] else { return false }
        sendKeyInUse = context
        sendInUse = chosen
        return true
    }

    /// The protected SCTP restart at the end whose peer restarted (draft "SCTP Restart
    /// Considerations"): `context`, the restart context the peer's COOKIE ECHO opened under, protects
    /// what this end sends from now on; every primary context and every other restart context is
    /// destroyed, and the next primary epoch is 3 again. False when `context` is not installed both
    /// ways.
    mutating func restart(under context: DTLSKeyContextID) -> Bool {
        guard context.restart, sendContexts[context] != nil, receiveContexts[context] != nil else { return false }
        for id in sendContexts.keys where id != context { destroySendKeys(for: id) }
        for id in receiveContexts.keys where id != context { destroyReceiveKeys(for: id) }
        lastPrimarySendEpoch = nil
        lastPrimaryReceiveEpoch = nil
        newestPeerPrimaryEpoch = 0
        return useSendKeys(context)
    }

    mutating func countRefusedRestart() { counters.restartsRefused += 1 }

    /// "Require Protected SCTP Packets": from now on only packets in a DTLS chunk, and INIT or
    /// INIT ACK, are passed on.
    mutating func requireProtectedPackets() { requiresProtection = true }

    /// "Configure Replay Protection", for receive contexts installed afterwards; DTLS replay
    /// protection cannot be turned off (draft "Security Considerations").
    mutating func configureReplayWindow(_ size: Int) throws(TransportError) {
        guard (1...ReplayWindow.maximumSize).contains(size) else {
            throw .invalidArgument("the replay window holds 1 to \(ReplayWindow.maximumSize) records, not \(size)")
        }
        replayWindowSize = size
    }

    var installedSendContexts: Set<DTLSKeyContextID> { Set(sendContexts.keys) }
    var installedReceiveContexts: Set<DTLSKeyContextID> { Set(receiveContexts.keys) }

    // MARK: Outgoing packets

    /// Whether outgoing packets are protected: once send keys are in use, every packet is
    /// (draft "DTLS Chunk Handling").
    var protectsOutput: Bool { sendKeyInUse != nil }

    /// Protects one SCTP packet (common header and chunks) into `output`, which has room for
    /// `packet.count + maximumOverhead` bytes: the same common header (its checksum still to be
    /// filled), then one DTLS chunk. Returns the protected length, or nil when no send keys are in
    /// use or the chunks exceed 2^14 bytes.
    mutating func protect(_ packet: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard let id = sendKeyInUse, let context = sendInUse else { return nil }
        let common = SCTPPacket.commonHeaderLength
        guard packet.count > common else { return nil }
        let chunks = packet.count - common
        guard chunks <= Self.maximumPlaintext, context.nextSequence < UInt64.max else { return nil }
        let recordStart = common + Self.headerOverhead
        let innerLength = chunks + 1
        let recordEnd = recordStart + innerLength + DTLSChunkCipherSuite.tagLength
        let chunkLength = recordEnd - common
        let total = common + (chunkLength + 3) & ~3
        precondition(output.count >= total)
        let sequence = context.nextSequence
        let base = output.baseAddress!

        output.copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[0..<common]))
        // DTLS chunk header: type, flags (R), length without the post-padding.
        output[common] = Self.chunkType
        output[common + 1] = id.restart ? Self.restartFlag : 0
        output[common + 2] = UInt8(chunkLength >> 8)
        output[common + 3] = UInt8(chunkLength & 0xFF)
        output[common + 4] = 0  // pre-padding
        // Unified header: 0x28 | epoch & 3, then the sequence number (unmasked for the AAD).
        let headerStart = common + 5
        output[headerStart] = DTLSRecord.UnifiedHeader.chunkFixedBits | UInt8(id.epoch & 3)
        output[headerStart + 1] = UInt8(truncatingIfNeeded: sequence >> 8)
        output[headerStart + 2] = UInt8(truncatingIfNeeded: sequence)
        // DTLSInnerPlaintext: the chunks, read where usrsctp left them, then the content type.
        let header = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(output)[headerStart..<recordStart])
        let content = UnsafeRawBufferPointer(rebasing: packet[common...])
        let sealed = withUnsafeBytes(of: DTLSRecord.applicationData) { type in
            context.cipher.seal(sequence: sequence, header: header, plaintext: content, trailer: type, into: base + recordStart)
        }
        guard sealed else { return nil }
        // Record number encryption, after the AEAD (RFC 9147 section 4.2.3).
        let (mask0, mask1) = context.cipher.sequenceMask(sample: base + recordStart)
        output[headerStart + 1] ^= mask0
        output[headerStart + 2] ^= mask1
        for index in recordEnd..<total { output[index] = 0 }

        context.nextSequence += 1
        context.counters.encryptions += 1
        counters.sentProtected += 1
        return total
    }

    // MARK: Incoming packets

    enum DropReason: Equatable, Sendable {
        /// A plain packet after protection was required.
        case unprotected
        /// A DTLS chunk bundled with other chunks, or a malformed chunk or record.
        case malformed
        case noKey
        case replayed
        case failedAuthentication
    }

    enum Inbound: Equatable {
        /// A plain packet that may pass as it is.
        case plain
        /// The packet was protected; `output` holds the plain packet of this length.
        case unprotected(length: Int)
        case dropped(DropReason)
    }

    /// Reads one incoming SCTP packet (its checksum already verified). A DTLS chunk is opened into
    /// `output` (room for `packet.count` bytes) as the common header and the chunks it carried.
    mutating func unprotect(_ packet: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Inbound {
        let verdict = classify(packet, into: output)
        switch verdict {
        case .plain, .unprotected: break
        case .dropped(.unprotected): counters.droppedUnprotected += 1
        case .dropped(.malformed): counters.malformedDropped += 1
        case .dropped(.noKey): counters.noKeyDropped += 1
        case .dropped(.replayed): counters.replaysDropped += 1
        case .dropped(.failedAuthentication): counters.aeadFailures += 1
        }
        return verdict
    }

    private mutating func classify(_ packet: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Inbound {
        let common = SCTPPacket.commonHeaderLength
        guard packet.count >= common + 4 else { return .dropped(.malformed) }
        guard packet[common] == Self.chunkType else { return classifyPlain(packet) }

        // The DTLS chunk must be the only chunk (draft "DTLS Chunk Handling").
        let chunkLength = Int(packet[common + 2]) << 8 | Int(packet[common + 3])
        let available = packet.count - common
        guard chunkLength >= Self.headerOverhead, chunkLength <= available,
              (chunkLength + 3) & ~3 == available || chunkLength == available
        else { return .dropped(.malformed) }
        let restart = packet[common + 1] & Self.restartFlag != 0
        let recordStart = common + 5
        let record = UnsafeRawBufferPointer(rebasing: packet[recordStart..<(common + chunkLength)])
        guard let header = DTLSRecord.UnifiedHeader.parse(record),
              header.firstByte & 0xFC == DTLSRecord.UnifiedHeader.chunkFixedBits, header.length == nil
        else { return .dropped(.malformed) }
        guard let context = receiveSlots[(restart ? 4 : 0) + Int(header.epochBits)] else { return .dropped(.noKey) }
        let window = context.window
        let plainStart = output.baseAddress! + common
        let result = DTLSRecord.open(record, cipher: context.cipher, expected: window.expected,
                                     isFresh: { window.isFresh($0) }, into: plainStart)
        switch result {
        case .malformed:
            return .dropped(.malformed)
        case .replayed:
            context.counters.replaysDropped += 1
            return .dropped(.replayed)
        case .failedAuthentication:
            context.counters.decryptions += 1
            context.counters.failedDecryptions += 1
            return .dropped(.failedAuthentication)
        case .opened(let sequence, let innerLength):
            context.counters.decryptions += 1
            // Authenticated: the record counts as seen even if its content turns out unusable.
            context.window.accept(sequence)
            if context.id.restart {
                lastRestartContextOpened = context.id
            } else if context.id.epoch > newestPeerPrimaryEpoch {
                newestPeerPrimaryEpoch = context.id.epoch
            }
            let inner = UnsafeRawBufferPointer(start: plainStart, count: innerLength)
            guard let (length, type) = DTLSRecord.innerContent(inner), type == DTLSRecord.applicationData, length >= 4 else {
                return .dropped(.malformed)
            }
            UnsafeMutableRawBufferPointer(rebasing: output[0..<common]).copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[0..<common]))
            counters.receivedProtected += 1
            return .unprotected(length: common + length)
        }
    }

    /// A packet without a DTLS chunk first: dropped if it bundles one further on, or, once protection
    /// is required, unless it starts with INIT or INIT ACK (draft "DTLS Chunk Handling").
    private func classifyPlain(_ packet: UnsafeRawBufferPointer) -> Inbound {
        var offset = SCTPPacket.commonHeaderLength
        while offset + 4 <= packet.count {
            if packet[offset] == Self.chunkType { return .dropped(.malformed) }
            let length = Int(packet[offset + 2]) << 8 | Int(packet[offset + 3])
            guard length >= 4 else { break }
            offset += (length + 3) & ~3
        }
        if requiresProtection {
            let first = packet[SCTPPacket.commonHeaderLength]
            guard first == Self.initChunkType || first == Self.initAckChunkType else { return .dropped(.unprotected) }
        }
        return .plain
    }
}
