import TapsDTLS13

/// One key management connection of the DTLS 1.3 method (draft-westerlund, "DTLS Connection
/// Handling"): a BoringSSL DTLS 1.3 engine and its retransmission timer; each datagram it writes
/// goes out as one key management message behind the DCI byte. Loop thread only.
final class DTLS13KeyManagementConnection: KeyManagementConnection {
    let index: UInt64
    let role: KeyManagementRole
    let engine: DTLS13Engine
    private let loop: EventLoop
    private let send: ([UInt8]) -> Void
    private let isRekey: Bool
    private var timer: UVTimer?
    private(set) var keys: DTLSChunkKeyExport.Keys?
    private(set) var suite: DTLSChunkCipherSuite?

    /// `send` takes a whole key management message (DCI byte and records). A client offers
    /// `session` for resumption (CM). `isRekey` names a rekey's connection in its errors.
    init(index: UInt64, role: KeyManagementRole, client: DTLS13Context, server: DTLS13Context, resuming session: [UInt8]? = nil,
         isRekey: Bool, loop: EventLoop, send: @escaping ([UInt8]) -> Void) throws(TransportError) {
        do {
            engine = try DTLS13Engine(context: role == .client ? client : server, resuming: session)
        } catch {
            throw TransportError.handshakeFailed("DTLS 1.3 key management: \(error)")
        }
        self.index = index
        self.role = role
        self.isRekey = isRekey
        self.loop = loop
        self.send = send
    }

    deinit { timer?.close() }

    var state: KeyManagementHandshakeState {
        switch engine.state {
        case .handshaking: .handshaking
        case .established: .established
        case .closed: .closed
        case .failed(let error): .failed(Self.transportError(error, rekey: isRekey))
        }
    }

    var resumed: Bool { engine.resumed }
    var peerCertificateDER: [UInt8]? { engine.peerCertificateDER }
    var peerCertificateChainDER: [[UInt8]] { engine.peerCertificateChainDER }
    var peerValidationError: String? { engine.peerValidationError }

    func start() {
        if role == .client { engine.start() }
        flush()
    }

    func receive(_ records: [UInt8]) {
        engine.receive(records)
        flush()
    }

    func close() {
        engine.close()
        flush()
        stopTimer()
    }

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

    /// The draft's labels, bound to both parameters with the client role's first.
    func exportKeys(agreement: DTLSChunkAgreement, initiated: Bool) throws(TransportError) -> DTLSChunkCipherSuite {
        guard let id = engine.cipherSuite, let suite = DTLSChunkCipherSuite(rawValue: id) else {
            throw .handshakeFailed("DTLS 1.3 key management negotiated a cipher suite the DTLS chunk has not")
        }
        keys = try DTLSChunkKeyExport.derive(suite: suite, downgradePreventionData: agreement.downgradePreventionData) { [engine] label, context, length in
            engine.exportKeyingMaterial(label: label, context: context, length: length)
        }
        self.suite = suite
        return suite
    }

    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) -> [UInt8]? {
        engine.exportKeyingMaterial(label: label, context: context, length: length)
    }

    func takeNewSessions() -> [(bytes: [UInt8], lifetimeSeconds: Int)] {
        engine.takeNewSessions().map { ($0.bytes, $0.lifetimeSeconds) }
    }

    static func transportError(_ error: DTLS13Error, rekey: Bool) -> TransportError {
        let what = rekey ? "DTLS 1.3 key management (rekeying)" : "DTLS 1.3 key management"
        return switch error.kind {
        case .certificateRejected: .certificateRejected("\(what): the peer's certificate: \(error.message)")
        case .invalidCredentials: .invalidCredentials("\(what): \(error.message)")
        case .handshakeFailed, .protocolViolation: .handshakeFailed("\(what): \(error.message)")
        }
    }
}
