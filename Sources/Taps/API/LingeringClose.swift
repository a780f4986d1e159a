/// The graceful close of a connection the application dropped without `close()`: what `send()`
/// accepted still goes out, then TLS close_notify and the transport's end (TCP FIN, an SCTP stream
/// reset or SHUTDOWN), and the layers are released once the peer ended too or `linger` passed. It
/// keeps itself and the layers alive until then; what arrives meanwhile is dropped, since nobody
/// can read it. Only `abort()` discards data. Loop thread only.
final class LingeringClose: LayerDelegate {
    private let layer: Layer
    private var timer: UVTimer?
    private var keepAlive: LingeringClose?

    /// How long a dropped connection waits for its peer's end before it is released anyway.
    static let linger: UInt64 = 5_000

    private init(_ layer: Layer) {
        self.layer = layer
    }

    /// Starts closing `layer` gracefully, in the manner of `Connection.close()`; `sendSideEnded`:
    /// the connection already ended its send side (a final message, or a close under way).
    static func start(_ layer: Layer, loop: EventLoop, sendSideEnded: Bool) {
        let closing = LingeringClose(layer)
        closing.keepAlive = closing
        layer.delegate = closing
        // As close() does: after the linger the layers are released, gracefully.
        closing.timer = UVTimer.schedule(on: loop, after: linger) { [weak closing] in closing?.finish(abortive: false) }
        let waitsForPeer = !layer.service.keepsMessageBoundaries
        guard !sendSideEnded else {
            if !waitsForPeer { closing.finish(abortive: false) }
            return
        }
        layer.finishWriting { [weak closing] _ in
            // Message stacks end without waiting for the peer, as close() does there.
            if !waitsForPeer { closing?.finish(abortive: false) }
        }
    }

    private func finish(abortive: Bool) {
        guard keepAlive != nil else { return }
        timer?.close()
        timer = nil
        if abortive { layer.abort() } else { layer.close() }
        keepAlive = nil
    }

    func layerDidBecomeReady() {}
    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {}
    func layerDidReadEndOfStream() { finish(abortive: false) }
    func layerDidFail(_ error: TransportError) { finish(abortive: true) }
}
