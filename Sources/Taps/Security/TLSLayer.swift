/// TLS over a byte-stream layer (TLS/TCP) or over one SCTP stream's messages (TLS/SCTP, RFC 3436),
/// or DTLS over a datagram layer (DTLS/UDP), binding a `TLSEngine` to the layer below. No
/// application data passes before the handshake completes. Loop thread only.
final class TLSLayer: Layer, LayerDelegate {
    weak var delegate: LayerDelegate?
    private let lower: Layer
    let engine: TLSEngine
    private var state: State = .idle
    /// DTLS: retransmits the last handshake flight when its timer expires (RFC 6347 section 4.2.4).
    private var retransmitTimer: UVTimer?
    /// TLS/SCTP clients: the association's sessions, which decide when this stream's handshake
    /// starts and what it resumes (RFC 3436 section 5).
    let streamSessions: TLSStreamSessions?
    /// TLS/SCTP `delayed`: the handshake waits for the first write (RFC 3436 section 5.3).
    private let deferredUntilFirstWrite: Bool
    /// The layer above was told it is ready (before the handshake, on a deferred stream).
    private var readyReported = false
    /// Deferred streams: what the application sent before the handshake finished, and a close asked
    /// for meanwhile; sent once it has.
    private var waitingWrites: [([UInt8], ((TransportError?) -> Void)?)] = []
    private var waitingFinish: ((TransportError?) -> Void)?
    /// This stream leads its association's handshakes: the others wait for its session, for at
    /// most `ticketWait` after its handshake.
    private var isSessionLeader = false
    private var ticketTimer: UVTimer?

    /// `deferred`: on a deferred stream the handshake has not started yet; `awaitingSession`: it
    /// waits for the session of the association's first stream.
    private enum State { case idle, deferred, awaitingSession, handshaking, ready, closing, failed }

    private unowned let loop: EventLoop
    /// Counts the handshake: full, resumed or failed.
    var metrics: StackMetrics?
    /// The layer below is up, so a failure from now on is the handshake's (not, say, a refused connect).
    private var handshakeBegan = false

    init(over lower: Layer, engine: TLSEngine, loop: EventLoop, streamSessions: TLSStreamSessions? = nil,
         deferredUntilFirstWrite: Bool = false) {
        self.lower = lower
        self.engine = engine
        self.loop = loop
        self.streamSessions = streamSessions
        self.deferredUntilFirstWrite = deferredUntilFirstWrite
        lower.delegate = self
        engine.loop = loop
        engine.onCallbackCompleted = { [weak self] in self?.handshakeCallbackDidFinish() }
    }

    /// An identity challenge or trust verifier answered: the suspended handshake goes on.
    private func handshakeCallbackDidFinish() {
        guard state == .handshaking else { return }
        let outcome = engine.resumeAfterCallback(handshakeDone: { handshakeDidComplete() }) { plaintext in
            delegate?.layerDidRead(owned: plaintext)
        }
        flush(completion: nil)
        if state == .handshaking { scheduleRetransmission() }
        handle(outcome)
    }

    var service: LayerService { engine.datagram ? .datagrams : .byteStream }
    /// DTLS keeps a message intact only within one record; TLS streams have no limit.
    var maximumMessageSize: Int? { engine.datagram ? engine.maximumRecordPayload : nil }
    var lowerLayer: Layer? { lower }

    func start() {
        state = .handshaking
        lower.start()
    }

    // MARK: From the layer below

    func layerDidBecomeReady() {
        guard state == .handshaking else { return }
        handshakeBegan = true
        if engine.recordPerWrite, let fragment = lower.messageFragmentSize { engine.fitRecords(toMessageFragment: fragment) }
        guard engine.context.role == .client || engine.continuesHandshake else { return }
        if deferredUntilFirstWrite {
            state = .deferred
            reportReady()
        } else {
            beginClientHandshake()
        }
    }

    /// A client starts its handshake, once its association's sessions let it (TLS/SCTP).
    private func beginClientHandshake() {
        guard let streamSessions, engine.context.role == .client else {
            state = .handshaking
            advanceHandshake()
            return
        }
        state = .awaitingSession
        engine.onNewSession = { [weak self] session in
            guard let self else { return }
            self.streamSessions?.sessionArrived(session, onResumedStream: self.engine.resumed)
            self.isSessionLeader = false
            self.stopTicketWait()
        }
        streamSessions.handshakeMayStart { [weak self] session, isLeader in
            guard let self, self.state == .awaitingSession else { return }
            if let session { self.engine.offer(session) }
            self.isSessionLeader = isLeader
            self.state = .handshaking
            self.advanceHandshake()
        }
    }

    private func reportReady() {
        guard !readyReported else { return }
        readyReported = true
        delegate?.layerDidBecomeReady()
    }

    private func advanceHandshake() {
        switch engine.handshake() {
        case .complete: handshakeDidComplete()
        case .needMoreData: break
        case .failed(let error): fail(error)
        }
        flush(completion: nil)
        scheduleRetransmission()
    }

    private func handshakeDidComplete() {
        guard state == .handshaking else { return }
        state = .ready
        metrics?.handshakeCompleted(resumed: engine.resumed)
        stopRetransmission()
        if isSessionLeader { awaitLeaderSession() }
        reportReady()
        sendWaitingWrites()
    }

    /// How long the streams waiting on a leader's session wait for its TLS 1.3 ticket, which
    /// follows the handshake; a server may send none.
    static let ticketWait: UInt64 = 1_000

    /// A TLS 1.2 session came with the handshake, if at all; a TLS 1.3 ticket follows it.
    private func awaitLeaderSession() {
        guard engine.negotiatedTLS13 else { return leaveSessionLead() }
        ticketTimer = UVTimer.schedule(on: loop, after: Self.ticketWait) { [weak self] in self?.leaveSessionLead() }
    }

    private func stopTicketWait() {
        ticketTimer?.close()
        ticketTimer = nil
    }

    /// Deferred streams: what the application sent before the handshake goes now, in order.
    private func sendWaitingWrites() {
        let writes = waitingWrites
        waitingWrites.removeAll()
        for (bytes, completion) in writes { bytes.withUnsafeBytes { write($0, completion: completion) } }
        if let finish = waitingFinish {
            waitingFinish = nil
            finishWriting(completion: finish)
        }
    }

    private func scheduleRetransmission() {
        guard engine.datagram, state == .handshaking, let milliseconds = engine.retransmissionTimeout else { return }
        let timer = retransmitTimer ?? UVTimer(loop: loop)
        retransmitTimer = timer
        timer.start(after: UInt64(max(milliseconds, 1))) { [weak self] in
            guard let self, self.state == .handshaking else { return }
            guard self.engine.handleRetransmissionTimeout() else {
                self.fail(.timedOut("the DTLS handshake got no answer after its retransmissions"))
                return
            }
            self.flush(completion: nil)
            self.scheduleRetransmission()
        }
    }

    private func stopRetransmission() {
        retransmitTimer?.close()
        retransmitTimer = nil
    }

    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard state != .failed else { return }
        let outcome = engine.feed(bytes, handshakeDone: { handshakeDidComplete() }) { plaintext in
            delegate?.layerDidRead(owned: plaintext)
        }
        // Handshake messages, tickets, KeyUpdate answers and alerts the engine produced while reading.
        flush(completion: nil)
        reportPeerKeyUpdates()
        if state == .handshaking { scheduleRetransmission() }
        handle(outcome)
    }

    /// TLS/SCTP: the largest user message that arrived (diagnostics: a whole record is at most
    /// 18,437 bytes, RFC 3436 section 3.2).
    private(set) var largestInboundMessage = 0

    /// TLS/SCTP: each user message on the stream is TLS input in order (a record split over
    /// messages, or several in one, is accepted). TLS data sent unordered breaks TLS's in-sequence
    /// delivery (RFC 3436 section 4.3.2): it ends this connection only.
    func layerDidRead(message: [UInt8], properties: MessageProperties, isComplete: Bool) {
        largestInboundMessage = max(largestInboundMessage, message.count)
        guard properties.ordered else {
            fail(.protocolViolation("the peer sent TLS data unordered on this SCTP stream, which RFC 3436 section 4.3.2 forbids"))
            return
        }
        message.withUnsafeBytes { layerDidRead($0) }
    }

    func layerDidReadEndOfStream() {
        guard state != .failed else { return }
        if engine.receivedCloseNotify { return }
        // We sent close_notify and the layer below ended (an SCTP SHUTDOWN leaves the peer no way
        // to answer with its own): a clean end, not a truncation.
        if state == .closing {
            delegate?.layerDidReadEndOfStream()
            return
        }
        let outcome = engine.feedEndOfStream(handshakeDone: { handshakeDidComplete() }) { plaintext in
            delegate?.layerDidRead(owned: plaintext)
        }
        handle(outcome)
    }

    private func reportPeerKeyUpdates() {
        while engine.peerKeyUpdates > 0 {
            engine.peerKeyUpdates -= 1
            metrics?.keyUpdates.increment()
            delegate?.layerDidUpdateKeys(byPeer: true)
        }
    }

    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        try engine.exportKeyingMaterial(label: label, context: context, length: length)
    }

    func exportSession() throws(TransportError) -> [UInt8]? {
        guard state == .ready || state == .closing else { throw .connectionClosed("a session exists only once the handshake completed") }
        return engine.exportSession()
    }

    func updateKeys(requestPeerUpdate: Bool) throws(TransportError) {
        guard state == .ready else { throw .connectionClosed("keys can be updated only on an established connection") }
        try engine.updateKeys(requestPeer: requestPeerUpdate)
        flush(completion: nil)
        metrics?.keyUpdates.increment()
        delegate?.layerDidUpdateKeys(byPeer: false)
    }

    private func handle(_ outcome: TLSEngine.ReadOutcome) {
        switch outcome {
        case .ok: break
        case .closeNotify: delegate?.layerDidReadEndOfStream()
        case .failed(let error): fail(error)
        }
    }

    func layerDidFail(_ error: TransportError) {
        fail(error)
    }

    func layerDidReportSoftError(_ error: TransportError) {
        delegate?.layerDidReportSoftError(error)
    }

    func layerDidUpdateKeys(byPeer: Bool) {
        delegate?.layerDidUpdateKeys(byPeer: byPeer)
    }

    private func fail(_ error: TransportError) {
        guard state != .failed else { return }
        if handshakeBegan && state != .ready && state != .closing { metrics?.handshakesFailed.increment() }
        state = .failed
        stopRetransmission()
        leaveSessionLead()
        let writes = waitingWrites
        waitingWrites.removeAll()
        writes.forEach { $0.1?(error) }
        delegate?.layerDidFail(error)
    }

    /// The streams waiting on this one's session stop waiting if it never came.
    private func leaveSessionLead() {
        stopTicketWait()
        guard isSessionLeader else { return }
        isSessionLeader = false
        streamSessions?.leaderEnded()
    }

    // MARK: From the layer above

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        if readyReported && [.deferred, .awaitingSession, .handshaking].contains(state) {
            // RFC 3436 section 5.3: the first write starts a deferred stream's handshake; the data
            // waits for it, so no application byte leaves before the handshake has finished.
            waitingWrites.append((Array(bytes), completion))
            if state == .deferred { beginClientHandshake() }
            return
        }
        guard state == .ready else {
            completion?(.connectionClosed("TLS is not established; no application data is sent before the handshake completes"))
            return
        }
        if let limit = maximumMessageSize, bytes.count > limit {
            // OpenSSL would split it into several records, which arrive as separate messages.
            completion?(.messageTooLarge("\(bytes.count) bytes exceed what one DTLS record carries here (\(limit))"))
            return
        }
        if let error = engine.write(bytes) {
            completion?(error)
            fail(error)
            return
        }
        flush(completion: completion)
    }

    private func flush(completion: ((TransportError?) -> Void)?) {
        guard engine.hasOutbound else {
            completion?(nil)
            return
        }
        engine.drainOutbound { ciphertext, isLast in lower.write(ciphertext, completion: isLast ? completion : nil) }
    }

    /// TLS/SCTP: RFC 3436 section 4.3.2 allows neither unordered delivery nor limited lifetimes
    /// for TLS records, and a record must arrive (reliable).
    func refusal(for properties: MessageProperties) -> TransportError? {
        guard engine.recordPerWrite, !properties.ordered || properties.lifetime != nil || !properties.reliable else { return nil }
        let broken = [(!properties.ordered, "ordered = false"), (properties.lifetime != nil, "a lifetime"),
                      (!properties.reliable, "reliable = false")].filter(\.0).map(\.1)
        guard !broken.isEmpty else { return nil }
        return .notSupported("\(broken.joined(separator: ", ")) cannot be used on tls-sctp: RFC 3436 section 4.3.2 requires TLS records on an SCTP stream to be delivered reliably, in order and without a limited lifetime")
    }

    func finishWriting(completion: @escaping (TransportError?) -> Void) {
        if readyReported && [.awaitingSession, .handshaking].contains(state) {
            waitingFinish = completion
            return
        }
        guard state == .ready else {
            lower.finishWriting(completion: completion)
            return
        }
        state = .closing
        engine.shutdown()
        flush(completion: nil)
        lower.finishWriting(completion: completion)
    }

    func setReading(_ enabled: Bool) { lower.setReading(enabled) }
    func abort() {
        stopRetransmission()
        leaveSessionLead()
        lower.abort()
    }

    func close() {
        stopRetransmission()
        leaveSessionLead()
        lower.close()
    }

    var localAddress: SocketAddress? { lower.localAddress }
    var remoteAddress: SocketAddress? { lower.remoteAddress }
    var securityDetails: SecurityDetails? { state == .ready || state == .closing ? engine.details : nil }
}
