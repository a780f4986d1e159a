import TapsDTLS13

/// One key management DTLS connection of the DTLS 1.3 method (draft-westerlund, "DTLS Connection
/// Handling"): its DTLS connection index (which is also the chunk epoch of the keys it exports),
/// its role in this DTLS connection, the engine and its timer. It sends what the engine writes as
/// key management messages on stream 0. Loop thread only.
final class DTLS13KeyManagementConnection {
    enum Role: Equatable { case client, server }

    let index: UInt64
    let role: Role
    let engine: DTLS13Engine
    private let loop: EventLoop
    private let send: ([UInt8]) -> Void
    private var timer: UVTimer?
    /// The chunk keys exported once the handshake finished.
    var keys: DTLSChunkKeyExport.Keys?
    var suite: DTLSChunkCipherSuite?

    /// `send` takes a whole key management message (DCI byte and records).
    /// A client offers `session` for resumption (CM).
    init(index: UInt64, role: Role, contexts: DTLS13Contexts, resuming session: [UInt8]? = nil, loop: EventLoop,
         send: @escaping ([UInt8]) -> Void) throws(TransportError) {
        do {
            engine = try DTLS13Engine(context: role == .client ? contexts.client : contexts.server, resuming: session)
        } catch {
            throw TransportError.handshakeFailed("DTLS 1.3 key management: \(error)")
        }
        self.index = index
        self.role = role
        self.loop = loop
        self.send = send
    }

    deinit { timer?.close() }

    /// Whether a message's DCI bits name this connection.
    func owns(_ message: DTLSKeyManagementMessage) -> Bool { message.connectionIndexBits == UInt8(index & 3) }

    func start() {
        if role == .client { engine.start() }
        flush()
    }

    func receive(_ records: [UInt8]) {
        engine.receive(records)
        flush()
    }

    /// Sends close_notify; the connection is done with.
    func close() {
        engine.close()
        flush()
        stopTimer()
    }

    /// Stops the timer of a connection given up without a close_notify.
    func stopTimer() {
        timer?.close()
        timer = nil
    }

    /// Sends what the engine wrote, one datagram per user message, and follows its timer.
    private func flush() {
        for datagram in engine.takeOutgoing() {
            send(DTLSKeyManagementMessage(connectionIndex: index, records: datagram).bytes)
        }
        stopTimer()
        guard let milliseconds = engine.timeoutMilliseconds else { return }
        timer = UVTimer.schedule(on: loop, after: max(1, milliseconds)) { [weak self] in
            guard let self else { return }
            timer = nil
            engine.handleTimeout()
            flush()
        }
    }

    /// Exports the chunk's keys with the negotiated suite.
    func exportKeys(downgradePreventionData: [UInt8]) throws(TransportError) -> (DTLSChunkKeyExport.Keys, DTLSChunkCipherSuite) {
        guard let id = engine.cipherSuite, let suite = DTLSChunkCipherSuite(rawValue: id) else {
            throw .handshakeFailed("DTLS 1.3 key management negotiated a cipher suite the DTLS chunk has not")
        }
        let keys = try DTLSChunkKeyExport.derive(suite: suite, downgradePreventionData: downgradePreventionData) { [engine] label, context, length in
            engine.exportKeyingMaterial(label: label, context: context, length: length)
        }
        self.keys = keys
        self.suite = suite
        return (keys, suite)
    }

    /// This end's write keys and the peer's, primary then restart.
    var ownWrite: (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial)? {
        keys.map { role == .client ? ($0.clientWrite, $0.restartClientWrite) : ($0.serverWrite, $0.restartServerWrite) }
    }

    var peerWrite: (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial)? {
        keys.map { role == .client ? ($0.serverWrite, $0.restartServerWrite) : ($0.clientWrite, $0.restartClientWrite) }
    }

    var primaryContext: DTLSKeyContextID { DTLSKeyContextID(epoch: index) }
    var restartContext: DTLSKeyContextID { DTLSKeyContextID(restart: true, epoch: index) }
}
