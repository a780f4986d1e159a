/// Faults to inject on a datagram path, for testing a stack under loss (`Preconnection.lossyPath`).
/// Rates are probabilities per datagram, drawn from a generator with a fixed seed, so a run repeats.
public struct LossyPath: Sendable, Hashable {
    /// Probability that a datagram is dropped.
    public var lossRate = 0.0
    /// Probability that a datagram is held back behind the next one (or for at most 10 ms, when no
    /// next one comes: a lone packet is late, not lost).
    public var reorderRate = 0.0
    /// Probability that a datagram is sent twice.
    public var duplicateRate = 0.0
    /// Probability that one byte of a datagram is flipped.
    public var corruptionRate = 0.0
    /// Each datagram is held up to this long (uniformly drawn); zero sends at once.
    public var maximumDelay: Duration = .zero
    /// The random generator's seed: the same seed repeats the same faults.
    public var seed: UInt64 = 1
    /// Tests: a man in the middle that sees each datagram (outgoing or incoming) before the faults
    /// and replaces it by any number of datagrams.
    var rewriter: DatagramRewriter? = nil

    /// The faults a lossy path injected, counted over both directions of one connection's path.
    public struct Counters: Sendable, Hashable {
        /// Datagrams that reached the path (before any fault).
        public var written = 0
        /// Datagrams dropped.
        public var dropped = 0
        /// Datagrams sent twice.
        public var duplicated = 0
        /// Datagrams held back behind the next one.
        public var reordered = 0
        /// Datagrams with a byte flipped.
        public var corrupted = 0
        /// Datagrams held up by `maximumDelay`.
        public var delayed = 0
    }

    /// A path with the given fault rates; all zero passes everything unchanged.
    public init(lossRate: Double = 0, reorderRate: Double = 0, duplicateRate: Double = 0, corruptionRate: Double = 0,
                maximumDelay: Duration = .zero, seed: UInt64 = 1) {
        self.lossRate = lossRate
        self.reorderRate = reorderRate
        self.duplicateRate = duplicateRate
        self.corruptionRate = corruptionRate
        self.maximumDelay = maximumDelay
        self.seed = seed
    }
}

/// Rewrites datagrams on a lossy path (tests: tampering, replays, downgrade attempts).
final class DatagramRewriter: Hashable, @unchecked Sendable {
    // @unchecked Sendable: called on the connection's loop only.
    let rewrite: (_ datagram: [UInt8], _ outgoing: Bool) -> [[UInt8]]
    init(_ rewrite: @escaping (_ datagram: [UInt8], _ outgoing: Bool) -> [[UInt8]]) { self.rewrite = rewrite }
    static func == (lhs: DatagramRewriter, rhs: DatagramRewriter) -> Bool { lhs === rhs }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

/// A datagram layer decorator that drops, duplicates, reorders, delays and corrupts datagrams in both
/// directions by the configured rates. Usable under any UDP-based stack. Loop thread only.
final class LossyLayer: Layer, LayerDelegate {
    weak var delegate: LayerDelegate?
    private let lower: Layer
    private let faults: LossyPath
    private let loop: EventLoop
    private var random: SplitMix64
    /// A datagram held back to be sent after the next one (reordering), per direction.
    private var heldOutgoing: [UInt8]?
    private var heldIncoming: [UInt8]?
    static let longestHoldMilliseconds: UInt64 = 10
    private(set) var counters = LossyPath.Counters()

    init(over lower: Layer, faults: LossyPath, loop: EventLoop) {
        self.lower = lower
        self.faults = faults
        self.loop = loop
        random = SplitMix64(seed: faults.seed)
        lower.delegate = self
    }

    var service: LayerService { .datagrams }
    var lowerLayer: Layer? { lower }
    var maximumMessageSize: Int? { lower.maximumMessageSize }
    var localAddress: SocketAddress? { lower.localAddress }
    var remoteAddress: SocketAddress? { lower.remoteAddress }

    func start() { lower.start() }
    func finishWriting(completion: @escaping (TransportError?) -> Void) { lower.finishWriting(completion: completion) }
    func setReading(_ enabled: Bool) { lower.setReading(enabled) }
    func abort() { lower.abort() }
    func close() { lower.close() }

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        write(Array(bytes), completion: completion)
    }

    /// Sees every datagram this end writes, before any fault (tests read the wire through it).
    var observeWrites: (([UInt8]) -> Void)?

    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?) {
        // The datagram counts as sent whatever happens to it on the way.
        counters.written += 1
        observeWrites?(array)
        completion?(nil)
        for datagram in faults.rewriter?.rewrite(array, true) ?? [array] {
            disturb(datagram, held: \.heldOutgoing) { [weak self] datagram in self?.lower.write(datagram, completion: nil) }
        }
    }

    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        let array = Array(bytes)
        for datagram in faults.rewriter?.rewrite(array, false) ?? [array] {
            disturb(datagram, held: \.heldIncoming) { [weak self] datagram in
                datagram.withUnsafeBytes { self?.delegate?.layerDidRead($0) }
            }
        }
    }

    /// Applies the faults to one datagram and passes what survives to `forward`.
    private func disturb(_ datagram: [UInt8], held: ReferenceWritableKeyPath<LossyLayer, [UInt8]?>, forward: @escaping ([UInt8]) -> Void) {
        if chance(faults.lossRate) {
            counters.dropped += 1
            return
        }
        var datagram = datagram
        if chance(faults.corruptionRate), !datagram.isEmpty {
            let index = Int(random.next() % UInt64(datagram.count))
            datagram[index] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            counters.corrupted += 1
        }
        var batch = [datagram]
        if chance(faults.duplicateRate) {
            counters.duplicated += 1
            batch.append(datagram)
        }
        if chance(faults.reorderRate), self[keyPath: held] == nil {
            // Held until the next datagram has gone first.
            counters.reordered += 1
            self[keyPath: held] = datagram
            UVTimer.schedule(on: loop, after: Self.longestHoldMilliseconds) { [weak self] in
                // Still the same hold (an equal datagram held since would be the same bytes anyway).
                guard let self, let still = self[keyPath: held], still == datagram else { return }
                self[keyPath: held] = nil
                forward(still)
            }
            return
        }
        if let previous = self[keyPath: held] {
            self[keyPath: held] = nil
            batch.append(previous)
        }
        let delay = faults.maximumDelay.milliseconds > 0 ? random.next() % UInt64(faults.maximumDelay.milliseconds + 1) : 0
        if delay == 0 {
            batch.forEach(forward)
        } else {
            counters.delayed += 1
            UVTimer.schedule(on: loop, after: delay) { batch.forEach(forward) }
        }
    }

    private func chance(_ rate: Double) -> Bool {
        rate > 0 && Double(random.next() >> 11) / Double(1 << 53) < rate
    }

    func layerDidBecomeReady() { delegate?.layerDidBecomeReady() }
    func layerDidReadEndOfStream() { delegate?.layerDidReadEndOfStream() }
    func layerDidFail(_ error: TransportError) { delegate?.layerDidFail(error) }
    func layerDidReportSoftError(_ error: TransportError) { delegate?.layerDidReportSoftError(error) }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, so fault runs repeat.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
