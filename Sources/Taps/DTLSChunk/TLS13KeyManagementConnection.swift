internal import COpenSSL
internal import CTapsShims

/// One key management connection of the TLS 1.3 method (draft-porfiri-tsvwg-sctp-dtls-handshake):
/// a TLS 1.3 connection of the system OpenSSL whose records go out whole, each in one key
/// management message behind the T bit and epoch byte ("TLS Message Transport"). It never carries
/// application data. Loop thread only.
final class TLS13KeyManagementConnection: KeyManagementConnection {
    let index: UInt64
    let role: KeyManagementRole
    private let engine: TLSEngine
    private let send: ([UInt8]) -> Void
    private let isRekey: Bool
    private(set) var state: KeyManagementHandshakeState = .handshaking
    private(set) var keys: DTLSChunkKeyExport.Keys?
    private(set) var suite: DTLSChunkCipherSuite?

    /// `context` is the method's client or server context; a client offers the cached session
    /// under `sessionKey` when `resumes` (CM), and new tickets land there.
    init(index: UInt64, role: KeyManagementRole, context: TLSContext, sessionKey: String?, resumes: Bool, isRekey: Bool,
         send: @escaping ([UInt8]) -> Void) throws(TransportError) {
        // Trust is in the certificate chain and identity, never a name or address (draft-porfiri
        // "Authentication and Identity").
        engine = try TLSEngine(context: context, serverName: nil, peerAddress: nil, sessionKey: sessionKey, recordPerWrite: true,
                               offersCachedSession: resumes, checksPeerName: false)
        self.index = index
        self.role = role
        self.isRekey = isRekey
        self.send = send
    }

    var resumed: Bool { engine.resumed }

    var peerCertificateDER: [UInt8]? {
        guard let certificate = taps_SSL_get_peer_certificate(engine.ssl) else { return nil }
        defer { X509_free(certificate) }
        return Credentials.der(certificate)
    }

    /// The leaf first (a server's view of the chain leaves it out), then what the peer sent.
    var peerCertificateChainDER: [[UInt8]] {
        let leaf = taps_SSL_get_peer_certificate(engine.ssl)
        defer { if let leaf { X509_free(leaf) } }
        return Credentials.derChain(leaf: leaf, sent: SSL_get_peer_cert_chain(engine.ssl))
    }

    var peerValidationError: String? {
        let result = SSL_get_verify_result(engine.ssl)
        return result == X509_V_OK ? nil : String(cString: X509_verify_cert_error_string(result))
    }

    func start() {
        if role == .client { advance(engine.handshake()) }
        flush()
    }

    func receive(_ records: [UInt8]) {
        guard state == .handshaking || state == .established else { return }
        let outcome = records.withUnsafeBytes { bytes in
            engine.feed(bytes, handshakeDone: { state = .established }, deliver: { _ in
                // The method never sends application data over TLS (draft-porfiri "Architecture").
                state = .failed(.protocolViolation("\(what): the peer sent TLS application data on a key management connection"))
            })
        }
        switch outcome {
        case .ok: break
        case .closeNotify: if state == .established { state = .closed }
        case .failed(let error): state = .failed(Self.named(error, what))
        }
        flush()
    }

    private func advance(_ progress: TLSEngine.Progress) {
        switch progress {
        case .needMoreData: break
        case .complete: state = .established
        case .failed(let error): state = .failed(Self.named(error, what))
        }
    }

    func close() {
        guard state == .established || state == .handshaking else { return }
        engine.shutdown()
        state = .closed
        flush()
    }

    func stopTimer() {}

    /// Sends what the engine wrote, one TLS record per user message (the record mode of TLS over
    /// SCTP; the draft allows several records in one message, and a receiver here takes either).
    private func flush() {
        engine.drainOutbound { record, _ in
            send(TLSKeyManagementMessage(epoch: index, content: .records(record)).bytes)
        }
    }

    func exportKeys(agreement: DTLSChunkAgreement, initiated: Bool) throws(TransportError) -> DTLSChunkCipherSuite {
        guard let cipher = SSL_get_current_cipher(engine.ssl),
              let suite = DTLSChunkCipherSuite(rawValue: UInt16(truncatingIfNeeded: SSL_CIPHER_get_protocol_id(cipher))) else {
            throw .handshakeFailed("\(what) negotiated a cipher suite the DTLS chunk has not")
        }
        let (initiator, responder) = initiated ? (agreement.localParameter, agreement.peerParameter) : (agreement.peerParameter, agreement.localParameter)
        keys = try TLSChunkKeyExport.derive(suite: suite, initiatorParameter: initiator, responderParameter: responder) { [engine] label, context, length in
            try? engine.exportKeyingMaterial(label: label, context: context, length: length)
        }
        self.suite = suite
        return suite
    }

    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) -> [UInt8]? {
        try? engine.exportKeyingMaterial(label: label, context: context, length: length)
    }

    /// OpenSSL's new-session callback keeps tickets in the context's session cache itself.
    func takeNewSessions() -> [(bytes: [UInt8], lifetimeSeconds: Int)] { [] }

    private var what: String { isRekey ? "TLS 1.3 key management (rekeying)" : "TLS 1.3 key management" }

    private static func named(_ error: TransportError, _ what: String) -> TransportError {
        TransportError(error.code, "\(what): \(error.message)")
    }
}
