/// Races connection attempts (RFC 9623 section 4.2, RFC 8305): candidates are tried in order, each
/// started a stagger interval after the previous one or as soon as it fails; the first to become
/// ready wins and the others are aborted. Loop thread only.
final class Racer {
    struct Candidate {
        let stack: ProtocolStack
        let address: SocketAddress
    }

    struct Winner {
        let layer: Layer
        let candidate: Candidate
    }

    private let loop: EventLoop
    private let candidates: [Candidate]
    private let staggerMilliseconds: UInt64
    private let makeLayer: (Candidate) throws(TransportError) -> Layer
    private var completion: ((Result<Winner, TransportError>) -> Void)?
    private var attempts: [Attempt] = []
    private var failures: [TransportError] = []
    private var staggerTimer: UVTimer?
    private var deadlineTimer: UVTimer?
    private var retainSelf: Racer?

    init(loop: EventLoop, candidates: [Candidate], stagger: Duration,
         makeLayer: @escaping (Candidate) throws(TransportError) -> Layer,
         completion: @escaping (Result<Winner, TransportError>) -> Void) {
        self.loop = loop
        self.candidates = candidates
        staggerMilliseconds = UInt64(max(0, stagger.milliseconds))
        self.makeLayer = makeLayer
        self.completion = completion
    }

    /// Starts racing; `timeout` bounds the whole establishment.
    func start(timeout: Duration?) {
        retainSelf = self
        if let timeout {
            deadlineTimer = UVTimer.schedule(on: loop, after: UInt64(max(0, timeout.milliseconds))) { [weak self] in
                self?.finish(.failure(.timedOut("no candidate became ready within \(timeout)")))
            }
        }
        startNext()
    }

    private func startNext() {
        staggerTimer?.close()
        staggerTimer = nil
        guard completion != nil else { return }
        guard attempts.count < candidates.count else {
            if attempts.allSatisfy(\.failed) { finish(.failure(bestFailure())) }
            return
        }
        let candidate = candidates[attempts.count]
        let attempt = Attempt(racer: self, candidate: candidate)
        attempts.append(attempt)
        do {
            let layer = try makeLayer(candidate)
            attempt.layer = layer
            layer.delegate = attempt
            layer.start()
        } catch {
            attemptFailed(attempt, error)
            return
        }
        if attempts.count < candidates.count, completion != nil, !attempt.failed {
            staggerTimer = UVTimer.schedule(on: loop, after: staggerMilliseconds) { [weak self] in self?.startNext() }
        }
    }

    fileprivate func attemptReady(_ attempt: Attempt) {
        guard completion != nil, let layer = attempt.layer else { return }
        for other in attempts where other !== attempt { other.cancel() }
        finish(.success(Winner(layer: layer, candidate: attempt.candidate)))
    }

    fileprivate func attemptFailed(_ attempt: Attempt, _ error: TransportError) {
        guard !attempt.failed else { return }
        attempt.failed = true
        attempt.layer?.abort()
        attempt.layer = nil
        failures.append(error)
        guard completion != nil else { return }
        if attempts.count < candidates.count {
            startNext()
        } else if attempts.allSatisfy(\.failed) {
            finish(.failure(bestFailure()))
        }
    }

    /// The most telling failure: a security verdict beats a refused or reset connection.
    private func bestFailure() -> TransportError {
        let securityCodes: Set<TransportError.Code> = [.certificateRejected, .hostnameMismatch, .handshakeFailed, .protocolViolation]
        return failures.first { securityCodes.contains($0.code) } ?? failures.last
            ?? .noCandidate("no candidate to try")
    }

    private func finish(_ result: Result<Winner, TransportError>) {
        guard let completion else { return }
        self.completion = nil
        staggerTimer?.close()
        deadlineTimer?.close()
        if case .failure = result { attempts.forEach { $0.cancel() } }
        completion(result)
        retainSelf = nil
    }

    /// One attempt: the delegate of its layer while racing.
    fileprivate final class Attempt: LayerDelegate {
        unowned let racer: Racer
        let candidate: Candidate
        var layer: Layer?
        var failed = false

        init(racer: Racer, candidate: Candidate) {
            self.racer = racer
            self.candidate = candidate
        }

        func cancel() {
            guard !failed else { return }
            failed = true
            layer?.abort()
            layer = nil
        }

        func layerDidBecomeReady() { racer.attemptReady(self) }
        func layerDidRead(_ bytes: UnsafeRawBufferPointer) {}
        func layerDidReadEndOfStream() {}
        func layerDidFail(_ error: TransportError) { racer.attemptFailed(self, error) }
    }
}
