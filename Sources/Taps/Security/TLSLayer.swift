/// TLS over a byte-stream layer (TLS/TCP), or DTLS over a datagram layer (DTLS/UDP), binding a
/// `TLSEngine` to the layer below. No application data passes before the handshake completes.
/// Loop thread only.
final class TLSLayer: Layer, LayerDelegate {
    weak var delegate: LayerDelegate?
    private let lower: Layer
    let engine: TLSEngine
    private var state: State = .idle
    /// DTLS: retransmits the last handshake flight when its timer expires (RFC 6347 section 4.2.4).
    private var retransmitTimer: UVTimer?

    private enum State { case idle, handshaking, ready, closing, failed }

    private unowned let loop: EventLoop

    init(over lower: Layer, engine: TLSEngine, loop: EventLoop) {
        self.lower = lower
        self.engine = engine
        self.loop = loop
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
        if engine.context.role == .client || engine.continuesHandshake { advanceHandshake() }
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
        stopRetransmission()
        delegate?.layerDidBecomeReady()
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

    func layerDidReadEndOfStream() {
        guard state != .failed else { return }
        if engine.receivedCloseNotify { return }
        let outcome = engine.feedEndOfStream(handshakeDone: { handshakeDidComplete() }) { plaintext in
            delegate?.layerDidRead(owned: plaintext)
        }
        handle(outcome)
    }

    private func reportPeerKeyUpdates() {
        while engine.peerKeyUpdates > 0 {
            engine.peerKeyUpdates -= 1
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
        state = .failed
        stopRetransmission()
        delegate?.layerDidFail(error)
    }

    // MARK: From the layer above

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
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

    func finishWriting(completion: @escaping (TransportError?) -> Void) {
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
        lower.abort()
    }

    func close() {
        stopRetransmission()
        lower.close()
    }

    var localAddress: SocketAddress? { lower.localAddress }
    var remoteAddress: SocketAddress? { lower.remoteAddress }
    var securityDetails: SecurityDetails? { state == .ready || state == .closing ? engine.details : nil }
}
