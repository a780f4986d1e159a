/// Connection racing (RFC 9623 section 4.2) with Happy Eyeballs (RFC 8305) as a pure state machine:
/// every input returns the actions to take, and nothing here touches a socket, a timer or a clock,
/// so tests drive it with virtual time. `Racer` performs the actions on a loop.
///
/// - Names resolve per endpoint and family (an AAAA and an A query each, RFC 8305 section 3).
///   An IPv6 answer starts racing at once; an IPv4 answer first waits up to the resolution delay
///   for the IPv6 one.
/// - Candidates are ordered by stack rank, then by address in Happy Eyeballs order (IPv6 first,
///   then alternating families, section 4); addresses that arrive later are sorted in among those
///   not yet tried.
/// - An attempt starts a stagger interval after the previous one, or at once when one fails
///   (section 5). The first attempt to become ready wins and the others are cancelled.
struct RaceStateMachine {
    struct Candidate: Hashable {
        let stack: ProtocolStack
        let address: SocketAddress
    }

    /// One name query: an endpoint of the preconnection (its index) and an address family.
    struct Query: Hashable {
        let endpoint: Int
        let family: SocketAddress.Family
    }

    typealias AttemptID = Int

    enum Timer: Hashable {
        /// Bounds the whole establishment, resolution included.
        case deadline
        /// RFC 8305 section 3: how long IPv4 answers wait for an IPv6 one.
        case resolutionDelay
        /// RFC 8305 section 5: the interval between attempt starts.
        case stagger
    }

    enum Input {
        case start
        case resolved(Query, Result<[SocketAddress], TransportError>)
        case timerFired(Timer)
        case attemptReady(AttemptID)
        case attemptFailed(AttemptID, TransportError)
    }

    enum Action {
        case resolve(Query)
        case startTimer(Timer, after: Duration)
        case cancelTimer(Timer)
        case startAttempt(AttemptID, Candidate)
        case cancelAttempt(AttemptID)
        case succeed(AttemptID, Candidate)
        case fail(TransportError)
    }

    struct Configuration {
        /// The stacks that qualify, best first.
        var stacks: [ProtocolStack]
        /// How many endpoints to resolve (the remote and its alternatives).
        var endpointCount: Int
        var stagger: Duration
        /// RFC 8305 section 3 recommends 50 ms.
        var resolutionDelay: Duration = .milliseconds(50)
        var timeout: Duration?
    }

    private enum Phase {
        case idle
        /// Waiting for the first usable answer.
        case resolving
        /// IPv4 addresses are known; waiting a little for IPv6 ones.
        case awaitingIPv6
        case racing
        case finished
    }

    private let configuration: Configuration
    private var phase = Phase.idle
    private var pendingQueries: Set<Query> = []
    private var answers: [Query: [SocketAddress]] = [:]
    private var resolutionErrors: [(endpoint: Int, error: TransportError)] = []
    private var attempted: Set<Candidate> = []
    private var running: [AttemptID: Candidate] = [:]
    private var nextAttemptID = 0
    private var failures: [TransportError] = []
    private var activeTimers: Set<Timer> = []
    /// The stagger interval passed (or an attempt failed) with no candidate left to start: the
    /// next address to arrive starts at once.
    private var startsOnNextAddress = false
    private var actions: [Action] = []

    init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    var isFinished: Bool { phase == .finished }

    /// Whether `query` is still unanswered (a resolver may answer before `resolve` returns).
    func isAwaiting(_ query: Query) -> Bool { pendingQueries.contains(query) }

    mutating func handle(_ input: Input) -> [Action] {
        actions = []
        switch (phase, input) {
        case (.idle, .start):
            begin()
        case (.idle, _), (.finished, _), (_, .start):
            break
        case (_, .resolved(let query, let result)):
            guard pendingQueries.remove(query) != nil else { break }
            record(result, for: query)
            advanceAfterAnswer()
        case (_, .timerFired(let timer)):
            guard activeTimers.remove(timer) != nil else { break }
            timerFired(timer)
        case (_, .attemptReady(let id)):
            guard let winner = running.removeValue(forKey: id) else { break }
            finish(with: .succeed(id, winner))
        case (_, .attemptFailed(let id, let error)):
            guard running.removeValue(forKey: id) != nil else { break }
            failures.append(error)
            cancelTimer(.stagger)
            startNextAttempt()
        }
        return actions
    }

    // MARK: Resolution

    private mutating func begin() {
        phase = .resolving
        if let timeout = configuration.timeout { startTimer(.deadline, after: timeout) }
        for endpoint in 0..<configuration.endpointCount {
            for family in [SocketAddress.Family.ipv6, .ipv4] {
                let query = Query(endpoint: endpoint, family: family)
                pendingQueries.insert(query)
                actions.append(.resolve(query))
            }
        }
        if configuration.endpointCount == 0 { finish(with: .fail(.noCandidate("no endpoint to connect to"))) }
    }

    private mutating func record(_ result: Result<[SocketAddress], TransportError>, for query: Query) {
        switch result {
        case .success(let addresses): answers[query] = addresses.filter { $0.family == query.family }
        case .failure(let error): resolutionErrors.append((query.endpoint, error))
        }
    }

    private mutating func advanceAfterAnswer() {
        switch phase {
        case .resolving:
            if !addresses(.ipv6).isEmpty {
                beginRacing()
            } else if !addresses(.ipv4).isEmpty {
                if pendingQueries.contains(where: { $0.family == .ipv6 }) {
                    phase = .awaitingIPv6
                    startTimer(.resolutionDelay, after: configuration.resolutionDelay)
                } else {
                    beginRacing()
                }
            } else if pendingQueries.isEmpty {
                finish(with: .fail(resolutionFailure()))
            }
        case .awaitingIPv6:
            if !addresses(.ipv6).isEmpty || !pendingQueries.contains(where: { $0.family == .ipv6 }) {
                cancelTimer(.resolutionDelay)
                beginRacing()
            }
        case .racing:
            if startsOnNextAddress { startNextAttempt() }
        case .idle, .finished:
            break
        }
    }

    private func addresses(_ family: SocketAddress.Family) -> [SocketAddress] {
        var addresses: [SocketAddress] = []
        for endpoint in 0..<configuration.endpointCount {
            for address in answers[Query(endpoint: endpoint, family: family)] ?? [] where !addresses.contains(address) {
                addresses.append(address)
            }
        }
        return addresses
    }

    /// RFC 8305 section 4 with a First Address Family Count of 1: IPv6, then alternating.
    static func interleaveFamilies(ipv6: [SocketAddress], ipv4: [SocketAddress]) -> [SocketAddress] {
        var ordered: [SocketAddress] = []
        for index in 0..<max(ipv6.count, ipv4.count) {
            if index < ipv6.count { ordered.append(ipv6[index]) }
            if index < ipv4.count { ordered.append(ipv4[index]) }
        }
        return ordered
    }

    private func resolutionFailure() -> TransportError {
        resolutionErrors.min { $0.endpoint < $1.endpoint }?.error
            ?? .resolutionFailed("no endpoint resolved to an IPv4 or IPv6 address")
    }

    // MARK: Racing

    private mutating func beginRacing() {
        phase = .racing
        startNextAttempt()
    }

    /// Candidates in racing order that no attempt has tried yet.
    private var untriedCandidates: [Candidate] {
        let ordered = Self.interleaveFamilies(ipv6: addresses(.ipv6), ipv4: addresses(.ipv4))
        return configuration.stacks.flatMap { stack in ordered.map { Candidate(stack: stack, address: $0) } }
            .filter { !attempted.contains($0) }
    }

    private mutating func startNextAttempt() {
        let untried = untriedCandidates
        guard let candidate = untried.first else {
            if running.isEmpty && pendingQueries.isEmpty {
                finish(with: .fail(failures.isEmpty ? resolutionFailure() : bestFailure()))
            } else {
                startsOnNextAddress = true
            }
            return
        }
        startsOnNextAddress = false
        let id = nextAttemptID
        nextAttemptID += 1
        attempted.insert(candidate)
        running[id] = candidate
        actions.append(.startAttempt(id, candidate))
        if untried.count > 1 || !pendingQueries.isEmpty {
            startTimer(.stagger, after: configuration.stagger)
        }
    }

    private mutating func timerFired(_ timer: Timer) {
        switch timer {
        case .deadline:
            let within = configuration.timeout.map { " within \($0)" } ?? ""
            finish(with: .fail(.timedOut("no candidate became ready\(within)\(stateAtDeadline)")))
        case .resolutionDelay:
            beginRacing()
        case .stagger:
            startNextAttempt()
        }
    }

    /// What the race was still waiting for, for the timeout's message.
    private var stateAtDeadline: String {
        var parts: [String] = []
        if !pendingQueries.isEmpty {
            let lookups = pendingQueries.sorted { ($0.endpoint, $0.family == .ipv6 ? 0 : 1) < ($1.endpoint, $1.family == .ipv6 ? 0 : 1) }
            parts.append("name lookups unanswered: " + lookups.map { "endpoint \($0.endpoint) \($0.family == .ipv6 ? "IPv6" : "IPv4")" }
                .joined(separator: ", "))
        }
        if !running.isEmpty {
            parts.append("attempts still running: " + running.keys.sorted().compactMap { running[$0] }
                .map { "\($0.stack) to \($0.address)" }.joined(separator: ", "))
        }
        if let failure = failures.last { parts.append("last failure: \(failure)") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")"
    }

    /// The most telling failure: a security verdict beats a refused or reset connection.
    private func bestFailure() -> TransportError {
        let securityCodes: Set<TransportError.Code> = [.certificateRejected, .hostnameMismatch, .handshakeFailed, .protocolViolation]
        return failures.first { securityCodes.contains($0.code) } ?? failures.last
            ?? .noCandidate("no candidate to try")
    }

    // MARK: Ending

    private mutating func finish(with outcome: Action) {
        phase = .finished
        for timer in activeTimers { actions.append(.cancelTimer(timer)) }
        activeTimers.removeAll()
        for id in running.keys.sorted() { actions.append(.cancelAttempt(id)) }
        running.removeAll()
        actions.append(outcome)
    }

    private mutating func startTimer(_ timer: Timer, after delay: Duration) {
        activeTimers.insert(timer)
        actions.append(.startTimer(timer, after: delay))
    }

    private mutating func cancelTimer(_ timer: Timer) {
        if activeTimers.remove(timer) != nil { actions.append(.cancelTimer(timer)) }
    }
}
