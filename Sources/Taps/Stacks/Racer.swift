/// Runs a `RaceStateMachine`: resolves names, arms timers and starts layers as it asks, and feeds
/// it what happens. The clock and the resolver are injected (a loop's timers and getaddrinfo in the
/// library, virtual ones in tests). Loop thread only.
final class Racer {
    struct Winner {
        let layer: Layer
        let candidate: RaceStateMachine.Candidate
    }

    private var machine: RaceStateMachine
    private let endpoints: [(host: String, port: UInt16)]
    private let clock: any RacingClock
    private let resolver: any NameResolving
    private let makeLayer: (RaceStateMachine.Candidate) throws(TransportError) -> Layer
    private var completion: ((Result<Winner, TransportError>) -> Void)?
    private var attempts: [RaceStateMachine.AttemptID: Attempt] = [:]
    private var timers: [RaceStateMachine.Timer: any RacingCancellable] = [:]
    private var queries: [RaceStateMachine.Query: any RacingCancellable] = [:]
    /// Inputs that arrive while one is being handled (a layer failing inside `start()`, a
    /// resolver answering at once) wait their turn, so the machine never sees one re-entrantly.
    private var inputs: [RaceStateMachine.Input] = []
    private var isHandling = false
    private var retainSelf: Racer?

    init(endpoints: [(host: String, port: UInt16)], configuration: RaceStateMachine.Configuration,
         clock: any RacingClock, resolver: any NameResolving,
         makeLayer: @escaping (RaceStateMachine.Candidate) throws(TransportError) -> Layer,
         completion: @escaping (Result<Winner, TransportError>) -> Void) {
        self.endpoints = endpoints
        machine = RaceStateMachine(configuration)
        self.clock = clock
        self.resolver = resolver
        self.makeLayer = makeLayer
        self.completion = completion
    }

    /// Starts racing; the racer keeps itself alive until it has a result.
    func start() {
        retainSelf = self
        handle(.start)
    }

    private func handle(_ input: RaceStateMachine.Input) {
        inputs.append(input)
        guard !isHandling else { return }
        isHandling = true
        while !inputs.isEmpty {
            for action in machine.handle(inputs.removeFirst()) { perform(action) }
        }
        isHandling = false
    }

    private func perform(_ action: RaceStateMachine.Action) {
        switch action {
        case .resolve(let query):
            let endpoint = endpoints[query.endpoint]
            let pending = resolver.resolve(endpoint.host, port: endpoint.port, family: query.family) { [weak self] result in
                self?.queries[query] = nil
                self?.handle(.resolved(query, result))
            }
            if machine.isAwaiting(query) { queries[query] = pending }
        case .startTimer(let timer, let delay):
            timers.removeValue(forKey: timer)?.cancel()
            timers[timer] = clock.schedule(after: delay) { [weak self] in
                self?.timers[timer] = nil
                self?.handle(.timerFired(timer))
            }
        case .cancelTimer(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        case .startAttempt(let id, let candidate):
            start(id, candidate)
        case .cancelAttempt(let id):
            attempts.removeValue(forKey: id)?.abort()
        case .succeed(let id, let candidate):
            let layer = attempts.removeValue(forKey: id)?.layer
            finish(layer.map { .success(Winner(layer: $0, candidate: candidate)) }
                   ?? .failure(.noCandidate("the winning attempt has no layer")))
        case .fail(let error):
            finish(.failure(error))
        }
    }

    private func start(_ id: RaceStateMachine.AttemptID, _ candidate: RaceStateMachine.Candidate) {
        let attempt = Attempt(racer: self, id: id)
        attempts[id] = attempt
        do {
            let layer = try makeLayer(candidate)
            attempt.layer = layer
            layer.delegate = attempt
            layer.start()
        } catch {
            attemptFailed(id, error)
        }
    }

    fileprivate func attemptReady(_ id: RaceStateMachine.AttemptID) {
        handle(.attemptReady(id))
    }

    fileprivate func attemptFailed(_ id: RaceStateMachine.AttemptID, _ error: TransportError) {
        attempts.removeValue(forKey: id)?.abort()
        handle(.attemptFailed(id, error))
    }

    private func finish(_ result: Result<Winner, TransportError>) {
        guard let completion else { return }
        self.completion = nil
        timers.values.forEach { $0.cancel() }
        timers.removeAll()
        // Lookups nobody waits for any more: a getaddrinfo still queued behind slow ones frees its
        // place in libuv's thread pool.
        queries.values.forEach { $0.cancel() }
        queries.removeAll()
        completion(result)
        retainSelf = nil
    }

    /// One attempt: the delegate of its layer while racing.
    private final class Attempt: LayerDelegate {
        unowned let racer: Racer
        let id: RaceStateMachine.AttemptID
        var layer: Layer?

        init(racer: Racer, id: RaceStateMachine.AttemptID) {
            self.racer = racer
            self.id = id
        }

        func abort() {
            let layer = self.layer
            self.layer = nil
            layer?.abort()
        }

        func layerDidBecomeReady() { racer.attemptReady(id) }
        func layerDidRead(_ bytes: UnsafeRawBufferPointer) {}
        func layerDidReadEndOfStream() {}
        func layerDidFail(_ error: TransportError) { racer.attemptFailed(id, error) }
    }
}
