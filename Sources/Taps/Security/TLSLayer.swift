/// TLS over a byte-stream layer (TLS/TCP), binding a `TLSEngine` to the layer below. No application
/// data passes before the handshake completes. Loop thread only.
final class TLSLayer: Layer, LayerDelegate {
    weak var delegate: LayerDelegate?
    private let lower: Layer
    let engine: TLSEngine
    private var state: State = .idle

    private enum State { case idle, handshaking, ready, closing, failed }

    init(over lower: Layer, engine: TLSEngine) {
        self.lower = lower
        self.engine = engine
        lower.delegate = self
    }

    var isDatagram: Bool { false }
    var lowerLayer: Layer { lower }

    func start() {
        state = .handshaking
        lower.start()
    }

    // MARK: From the layer below

    func layerDidBecomeReady() {
        guard state == .handshaking else { return }
        if engine.context.role == .client { advanceHandshake() }
    }

    private func advanceHandshake() {
        switch engine.handshake() {
        case .complete: handshakeDidComplete()
        case .needMoreData: break
        case .failed(let error): fail(error)
        }
        flush(completion: nil)
    }

    private func handshakeDidComplete() {
        guard state == .handshaking else { return }
        state = .ready
        delegate?.layerDidBecomeReady()
    }

    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard state != .failed else { return }
        let outcome = engine.feed(bytes, handshakeDone: { handshakeDidComplete() }) { plaintext in
            delegate?.layerDidRead(owned: plaintext)
        }
        // Handshake messages, tickets and alerts the engine produced while reading.
        flush(completion: nil)
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

    private func fail(_ error: TransportError) {
        guard state != .failed else { return }
        state = .failed
        delegate?.layerDidFail(error)
    }

    // MARK: From the layer above

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        guard state == .ready else {
            completion?(.connectionClosed("TLS is not established; no application data is sent before the handshake completes"))
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
        engine.drainOutbound { ciphertext in lower.write(ciphertext, completion: completion) }
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
    func abort() { lower.abort() }
    func close() { lower.close() }

    var localAddress: SocketAddress? { lower.localAddress }
    var remoteAddress: SocketAddress? { lower.remoteAddress }
    var securityDetails: SecurityDetails? { state == .ready || state == .closing ? engine.details : nil }
    var pendingWriteBytes: Int { lower.pendingWriteBytes }
}
