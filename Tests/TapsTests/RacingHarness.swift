@testable import Taps

/// Virtual time for the racer: timers fire only when a test advances the clock.
final class VirtualClock: RacingClock {
    final class Timer: RacingCancellable {
        let due: Duration
        let order: Int
        var body: (() -> Void)?
        init(due: Duration, order: Int, body: @escaping () -> Void) {
            self.due = due
            self.order = order
            self.body = body
        }
        func cancel() { body = nil }
    }

    private(set) var now: Duration = .zero
    private var timers: [Timer] = []
    private var scheduled = 0

    func schedule(after delay: Duration, _ body: @escaping () -> Void) -> any RacingCancellable {
        scheduled += 1
        let timer = Timer(due: now + delay, order: scheduled, body: body)
        timers.append(timer)
        return timer
    }

    /// Timers still armed (neither fired nor cancelled).
    var armedTimers: Int { timers.filter { $0.body != nil }.count }

    /// Moves time forward to `time`, firing every timer due by then in order of due time.
    func advance(to time: Duration) {
        while let next = timers.filter({ $0.body != nil && $0.due <= time }).min(by: { ($0.due, $0.order) < ($1.due, $1.order) }) {
            now = next.due
            let body = next.body
            next.body = nil
            body?()
        }
        now = time
        timers.removeAll { $0.body == nil }
    }
}

/// A resolver whose answers come at scripted virtual times (or never, when not scripted).
final class ScriptedResolver: NameResolving {
    struct Key: Hashable {
        let host: String
        let family: SocketAddress.Family
    }

    private let clock: VirtualClock
    private var script: [Key: (delay: Duration, result: Result<[String], TransportError>)] = [:]
    private(set) var queries: [Key] = []
    /// Queries withdrawn before they answered.
    private(set) var cancelled: [Key] = []

    private final class Lookup: RacingCancellable {
        let cancelled: () -> Void
        init(cancelled: @escaping () -> Void) { self.cancelled = cancelled }
        func cancel() { cancelled() }
    }

    init(clock: VirtualClock) {
        self.clock = clock
    }

    func answer(_ host: String, _ family: SocketAddress.Family, after delay: Duration, with addresses: [String]) {
        script[Key(host: host, family: family)] = (delay, .success(addresses))
    }

    func fail(_ host: String, _ family: SocketAddress.Family, after delay: Duration, _ error: TransportError) {
        script[Key(host: host, family: family)] = (delay, .failure(error))
    }

    func resolve(_ host: String, port: UInt16, family: SocketAddress.Family,
                 completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) -> (any RacingCancellable)? {
        let key = Key(host: host, family: family)
        queries.append(key)
        let answer = script[key].map { entry in
            let result = entry.result.map { $0.map { SocketAddress(ip: $0, port: port)! } }
            return clock.schedule(after: entry.delay) { completion(result) }
        }
        return Lookup { [weak self] in
            answer?.cancel()
            self?.cancelled.append(key)
        }
    }
}

/// A layer that only records what the racer does with it; the test decides its fate.
final class ScriptedLayer: Layer {
    let candidate: RaceStateMachine.Candidate
    let startedAt: Duration
    weak var delegate: LayerDelegate?
    private(set) var aborted = false
    var service: LayerService { .byteStream }

    init(candidate: RaceStateMachine.Candidate, startedAt: Duration) {
        self.candidate = candidate
        self.startedAt = startedAt
    }

    func becomeReady() { delegate?.layerDidBecomeReady() }
    func fail(_ error: TransportError) { delegate?.layerDidFail(error) }

    func start() {}
    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {}
    func finishWriting(completion: @escaping (TransportError?) -> Void) {}
    func setReading(_ enabled: Bool) {}
    func abort() { aborted = true }
    func close() {}
    var localAddress: SocketAddress? { nil }
    var remoteAddress: SocketAddress? { candidate.address }
}

/// One race on virtual time: attempts are `ScriptedLayer`s, answers come from a `ScriptedResolver`.
final class RaceHarness {
    let clock = VirtualClock()
    lazy var resolver = ScriptedResolver(clock: clock)
    private(set) var layers: [ScriptedLayer] = []
    private(set) var result: Result<Racer.Winner, TransportError>?
    private(set) var finishedAt: Duration?
    /// Candidates whose layer cannot even be made (a socket that fails to open).
    var unbuildable: Set<String> = []

    func race(_ hosts: [String], stacks: [ProtocolStack] = [.tcp], stagger: Duration = .milliseconds(250),
              timeout: Duration? = nil) {
        let configuration = RaceStateMachine.Configuration(stacks: stacks, endpointCount: hosts.count,
                                                           stagger: stagger, timeout: timeout)
        let racer = Racer(endpoints: hosts.map { (host: $0, port: 443) }, configuration: configuration,
                          clock: clock, resolver: resolver, makeLayer: { [unowned self] candidate throws(TransportError) in
            if unbuildable.contains(candidate.address.ipAddress) { throw .invalidArgument("cannot open a socket") }
            let layer = ScriptedLayer(candidate: candidate, startedAt: clock.now)
            layers.append(layer)
            return layer
        }, completion: { [unowned self] result in
            self.result = result
            finishedAt = clock.now
        })
        racer.start()
    }

    /// The attempts so far: address and virtual start time in milliseconds.
    var starts: [String] { layers.map { "\($0.candidate.address.ipAddress)@\($0.startedAt.milliseconds)" } }

    func layer(_ index: Int) throws -> ScriptedLayer {
        guard layers.indices.contains(index) else { throw TransportError.noCandidate("attempt \(index) never started") }
        return layers[index]
    }
}
