import TapsDTLS13

/// The DTLS 1.3 key management method for the DTLS chunk (draft-westerlund-tsvwg-sctp-dtls-handshake)
/// on one association: a mutually authenticated DTLS 1.3 handshake (BoringSSL, `TapsDTLS13`) in
/// SCTP user messages on stream 0 and PPID 4242, each message the DCI byte and one DTLS datagram;
/// then the chunk's keys from the exporter, and PVALID. Loop thread only.
///
/// The order, so that no end sends what the other cannot read yet:
/// - the DTLS client, when its handshake completes, sends its Finished in clear and installs its
///   receive keys;
/// - the DTLS server, when the Finished arrives, installs both directions and sends PVALID, which
///   goes protected;
/// - the client, on PVALID, installs its send keys and requires protection: it is ready;
/// - the server, on the client's first protected packet, requires protection: it is ready.
final class DTLS13KeyManagement {
    /// KMId of this method: the draft asked for a 16-bit identifier, which no longer fits the chunk
    /// draft's 8-bit registry, so one from the first-come range stands in for it.
    static let method = DTLSKeyManagementMethod.dtls13

    private let engine: DTLS13Engine
    private let agreement: DTLSChunkAgreement
    private weak var association: SCTPAssociation?
    private let loop: EventLoop
    private var timer: UVTimer?
    private var keys: DTLSChunkKeyExport.Keys?
    private var suite: DTLSChunkCipherSuite?
    /// The DTLS connection index of the key management connection (the first is 3).
    private let connectionIndex = DTLSKeyManagementMessage.firstConnectionIndex
    private(set) var completed = false
    /// Told once the association may go to the application, or why it may not.
    var onCompletion: ((TransportError?) -> Void)?

    init(contexts: DTLS13Contexts, agreement: DTLSChunkAgreement, association: SCTPAssociation, loop: EventLoop) throws(TransportError) {
        do {
            engine = try DTLS13Engine(context: agreement.role == .client ? contexts.client : contexts.server)
        } catch {
            throw TransportError.handshakeFailed("DTLS 1.3 key management: \(error)")
        }
        self.agreement = agreement
        self.association = association
        self.loop = loop
    }

    deinit { timer?.close() }

    var cipherSuite: DTLSChunkCipherSuite? { suite }

    func start() {
        if agreement.role == .client { engine.start() }
        flush()
    }

    /// A message on PPID 4242.
    func receive(_ message: [UInt8]) {
        guard !completed else {
            feed(message)
            return
        }
        if message == DTLSKeyManagementMessage.protectionValid {
            protectionValid()
            return
        }
        feed(message)
        if engine.state == .established, keys == nil { handshakeCompleted() }
    }

    private func feed(_ message: [UInt8]) {
        guard let parsed = DTLSKeyManagementMessage(bytes: message), parsed.connectionIndexBits == UInt8(connectionIndex & 3) else { return }
        engine.receive(parsed.records)
        flush()
        if case .failed(let error) = engine.state { finish(Self.transportError(error)) }
    }

    /// Sends what the engine wrote, one datagram per user message, and follows its timer.
    private func flush() {
        for datagram in engine.takeOutgoing() {
            association?.sendKeyManagement(DTLSKeyManagementMessage(connectionIndex: connectionIndex, records: datagram).bytes, on: 0)
        }
        timer?.close()
        timer = nil
        guard let milliseconds = engine.timeoutMilliseconds else { return }
        timer = UVTimer.schedule(on: loop, after: max(1, milliseconds)) { [weak self] in
            guard let self else { return }
            timer = nil
            engine.handleTimeout()
            flush()
        }
    }

    private func handshakeCompleted() {
        guard let association else { return }
        do throws(TransportError) {
            guard let id = engine.cipherSuite, let suite = DTLSChunkCipherSuite(rawValue: id) else {
                throw .handshakeFailed("DTLS 1.3 key management negotiated a cipher suite the DTLS chunk has not")
            }
            let keys = try DTLSChunkKeyExport.derive(suite: suite, downgradePreventionData: agreement.downgradePreventionData) { [engine] label, context, length in
                engine.exportKeyingMaterial(label: label, context: context, length: length)
            }
            self.keys = keys
            self.suite = suite
            let primary = DTLSKeyContextID(epoch: DTLSChunkProtection.firstEpoch)
            let restart = DTLSKeyContextID(restart: true, epoch: DTLSChunkProtection.firstEpoch)
            if agreement.role == .client {
                try association.establishReceiveKeys(keys.serverWrite, suite: suite, for: primary)
                try association.establishReceiveKeys(keys.restartServerWrite, suite: suite, for: restart)
            } else {
                try association.establishReceiveKeys(keys.clientWrite, suite: suite, for: primary)
                try association.establishReceiveKeys(keys.restartClientWrite, suite: suite, for: restart)
                try association.establishSendKeys(keys.serverWrite, suite: suite, for: primary)
                try association.establishSendKeys(keys.restartServerWrite, suite: suite, for: restart)
                association.whenPeerAuthenticates { [weak self] in self?.serverSawProtectedPacket() }
                // PVALID goes protected: the send keys are in use from now on.
                association.sendKeyManagement(DTLSKeyManagementMessage.protectionValid, on: 0)
            }
        } catch {
            finish(error)
        }
    }

    /// The client: the server has the keys and says so.
    private func protectionValid() {
        guard agreement.role == .client, let keys, let suite, let association else { return }
        do throws(TransportError) {
            try association.establishSendKeys(keys.clientWrite, suite: suite, for: DTLSKeyContextID(epoch: DTLSChunkProtection.firstEpoch))
            try association.establishSendKeys(keys.restartClientWrite, suite: suite, for: DTLSKeyContextID(restart: true, epoch: DTLSChunkProtection.firstEpoch))
            try association.requireProtectedPackets()
            finish(nil)
        } catch {
            finish(error)
        }
    }

    private func serverSawProtectedPacket() {
        do throws(TransportError) {
            try association?.requireProtectedPackets()
            finish(nil)
        } catch {
            finish(error)
        }
    }

    private func finish(_ error: TransportError?) {
        guard !completed else { return }
        completed = true
        onCompletion?(error)
    }

    static func transportError(_ error: DTLS13Error) -> TransportError {
        switch error.kind {
        case .certificateRejected: .certificateRejected("DTLS 1.3 key management: the peer's certificate: \(error.message)")
        case .invalidCredentials: .invalidCredentials("DTLS 1.3 key management: \(error.message)")
        case .handshakeFailed, .protocolViolation: .handshakeFailed("DTLS 1.3 key management: \(error.message)")
        }
    }
}

/// The two DTLS 1.3 contexts a stack's recipe makes once: the key management role is only known
/// once the 0x8006 negotiation is done.
struct DTLS13Contexts: @unchecked Sendable {
    // @unchecked Sendable: DTLS13Context is immutable after init.
    let client: DTLS13Context
    let server: DTLS13Context

    /// Whether the parameters can run the method: mutual authentication needs our certificate and
    /// key and the roots the peer's certificate must chain to (not the system's store).
    static func configured(in security: SecurityParameters) -> Bool {
        guard security.localIdentity != nil, case .pem = security.trustedRoots else { return false }
        return true
    }

    /// Nil when the parameters cannot run the method (`configured(in:)`). Everything in PEM.
    init?(security: SecurityParameters) throws(TransportError) {
        guard Self.configured(in: security), let identity = security.localIdentity, case .pem(let roots) = security.trustedRoots else { return nil }
        let chain = try identity.certificateChain.load(), key = try identity.privateKey.load(), trusted = try roots.load()
        for (name, bytes) in [("certificate chain", chain), ("private key", key), ("trusted roots", trusted)] where !Self.isPEM(bytes) {
            throw .invalidCredentials("DTLS 1.3 key management reads PEM; the \(name) is not")
        }
        var configuration = DTLS13Configuration(certificateChainPEM: chain, privateKeyPEM: key, trustedRootsPEM: trusted)
        configuration.groups = security.algorithms.groups
        // SCTP delivers the handshake reliably: a long first retransmission keeps DTLS's own out of
        // the way, and user messages carry far more than an IP packet.
        configuration.initialRetransmissionMilliseconds = 3_000
        configuration.maximumDatagram = 16_000
        do {
            client = try DTLS13Context(role: .client, configuration: configuration)
            server = try DTLS13Context(role: .server, configuration: configuration)
        } catch {
            throw .invalidCredentials("DTLS 1.3 key management: \(error)")
        }
    }

    private static func isPEM(_ bytes: [UInt8]) -> Bool { bytes.starts(with: Array("-----BEGIN".utf8)) || String(decoding: bytes.prefix(4096), as: UTF8.self).contains("-----BEGIN") }
}
