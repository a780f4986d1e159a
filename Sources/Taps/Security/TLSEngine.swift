internal import COpenSSL
internal import CTapsShims

/// One TLS connection as a sans-I/O state machine over OpenSSL: ciphertext in, plaintext out, and
/// the reverse; no sockets. The `TLSLayer` binds it to the layer below. Loop thread only.
final class TLSEngine {
    let ssl: OpaquePointer
    let context: TLSContext
    let buffers: EngineBIO.Buffers
    /// DTLS: records travel in datagrams, each read and written whole.
    let datagram: Bool
    /// DTLS server: the ClientHello was already accepted by the listener's cookie check, so the
    /// handshake continues as soon as the layer starts.
    var continuesHandshake = false
    /// DTLS server: the address the listener's cookie check is looking at (cookie callbacks read it).
    var cookiePeer: SocketAddress?
    /// The most plaintext one TLS record carries (RFC 8446 section 5.1).
    static let recordPlaintextLimit = 16_384
    static let datagramMTU = 1280 - 48
    /// The key this connection's session is cached under (client side: server name and port).
    let sessionKey: String?
    private(set) var handshakeComplete = false
    var receivedCloseNotify = false
    /// Whether the handshake resumed a session (CM).
    private(set) var resumed = false

    // Handshake callbacks (TLSEngine+Callbacks): the loop their answers return to, what to call then,
    // and ciphertext that arrived while the handshake waited.
    var loop: EventLoop?
    var onCallbackCompleted: (() -> Void)?
    var awaitingCallback = false
    private var stashedInbound: [[UInt8]] = []
    /// Why a callback ended the handshake; reported instead of OpenSSL's generic error.
    var callbackError: TransportError?
    var identityState: CallbackState<Result<SecurityParameters.Identity?, any Error>> = .notAsked
    var trustState: CallbackState<TrustDecision> = .notAsked
    /// Server: the client's chain, for the verifier once the handshake completed.
    var serverTrustChallenge: TrustChallenge?
    /// Client: the name the server is expected to have.
    let expectedServerName: String?
    /// Server: where the sessions of this connection's tickets belong (a TLS/SCTP association's
    /// `sessionScope`); a resumption within the same scope issues no new ticket.
    var ticketScope: [UInt8]?

    // Sealing application records here (TLSEngine+RecordSealing).
    /// tls-sctp: TLS 1.3 application records are sealed with `TLS13RecordProtection` once the
    /// handshake is done.
    let sealsApplicationRecords: Bool
    /// This end's application traffic secret from OpenSSL's key log, until the writer takes it.
    var applicationWriteSecret: [UInt8]?
    /// Records OpenSSL sealed under that secret before the writer took over (a server's tickets).
    var recordsOpenSSLSealed: UInt64 = 0
    /// OpenSSL keeps sealing this connection's records (a KeyUpdate came first, another suite...).
    var sealingDeclined = false
    /// Seals this end's records; and the keys OpenSSL still seals its own alerts and KeyUpdates
    /// with, to open them before they are sealed again in sequence.
    var recordWriter: TLS13RecordProtection?
    var openSSLRecordKeys: TLS13RecordProtection?
    /// Most content per record this end writes (`fitRecords`).
    var recordContentLimit = TLSEngine.recordPlaintextLimit

    // Opening the peer's records here (TLSEngine+RecordOpening).
    /// The peer's application traffic secret from OpenSSL's key log, until the reader takes it.
    var peerApplicationSecret: [UInt8]?
    /// OpenSSL keeps opening this connection's records.
    var openingDeclined = false
    /// Opens the peer's records; and the keys OpenSSL reads with, under which the records it must
    /// see (tickets, KeyUpdates, alerts) are sealed again for it.
    var recordReader: TLS13RecordProtection?
    var openSSLReadKeys: TLS13RecordProtection?
    /// The start of a record whose end has not arrived yet.
    var partialInboundRecord: [UInt8] = []

    enum Progress { case needMoreData, complete, failed(TransportError) }
    enum ReadOutcome { case ok, closeNotify, failed(TransportError) }

    /// - Parameters:
    ///   - serverName: the name to send in SNI and verify the certificate against (client).
    ///   - peerAddress: the server's address, verified against the certificate when there is no name.
    ///   - recordPerWrite: every TLS record leaves as its own write (TLS over SCTP user messages);
    ///     ignored on DTLS, whose writes are datagrams.
    ///   - offersCachedSession: the client offers the cache's session for `sessionKey`; false when
    ///     the caller decides what to offer (`offer(_:)`), as tls-sctp's streams do.
    ///   - checksPeerName: false validates the server's chain only, for a peer known by its
    ///     certificate's identity alone (the DTLS chunk's TLS 1.3 key management).
    ///   - sealsApplicationRecords: with `recordPerWrite`, TLS 1.3 application records are sealed
    ///     by `TLS13RecordProtection` once the handshake is done (tls-sctp).
    init(context: TLSContext, serverName: String?, peerAddress: SocketAddress?, sessionKey: String?,
         recordPerWrite: Bool = false, offersCachedSession: Bool = true, checksPeerName: Bool = true,
         sealsApplicationRecords: Bool = false) throws(TransportError) {
        guard let ssl = SSL_new(context.context) else { throw TLSContext.lastError(.handshakeFailed, "SSL_new") }
        self.ssl = ssl
        self.context = context
        self.sessionKey = sessionKey
        self.sealsApplicationRecords = sealsApplicationRecords && recordPerWrite && !context.datagram
        expectedServerName = serverName ?? peerAddress?.ipAddress
        datagram = context.datagram
        buffers = EngineBIO.Buffers(framing: context.datagram ? .datagramPerWrite : recordPerWrite ? .recordPerWrite : .stream)
        if datagram {
            // We size records for the path ourselves: 1280 (the IPv6 minimum) less IP and UDP headers.
            _ = taps_SSL_set_options_no_query_mtu(ssl)
            _ = taps_SSL_set_mtu(ssl, Self.datagramMTU)
        }
        if self.sealsApplicationRecords { countRecordsOpenSSLSeals() }
        if recordPerWrite {
            // Over SCTP user messages no middlebox inspects TLS, so RFC 8446 appendix D.4's dummy
            // ChangeCipherSpec records would only cost each handshake two more messages.
            taps_SSL_disable_middlebox_compat(ssl)
        }
        let bio = EngineBIO.make(buffers)
        SSL_set_bio(ssl, bio, bio)
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
        // Notices the peer's KeyUpdate (RFC 8446 section 4.6.3) through the info callback, which
        // OpenSSL calls on handshake state changes only (a message callback would run per record).
        SSL_set_info_callback(ssl) { ssl, event, _ in
            guard let ssl, event & SSL_CB_LOOP != 0 else { return }
            let state = SSL_get_state(ssl)
            guard state == TLS_ST_SR_KEY_UPDATE || state == TLS_ST_CR_KEY_UPDATE,
                  let data = SSL_get_ex_data(ssl, 0) else { return }
            Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue().peerKeyUpdates += 1
        }
        if context.role == .client {
            SSL_set_connect_state(ssl)
            try configureClient(serverName: serverName, peerAddress: peerAddress, offersCachedSession: offersCachedSession,
                                checksPeerName: checksPeerName)
        } else {
            SSL_set_accept_state(ssl)
        }
    }

    deinit {
        SSL_free(ssl)
        if var secret = applicationWriteSecret { OPENSSL_cleanse(&secret, secret.count) }
        if var secret = peerApplicationSecret { OPENSSL_cleanse(&secret, secret.count) }
    }

    private func configureClient(serverName: String?, peerAddress: SocketAddress?, offersCachedSession: Bool, checksPeerName: Bool) throws(TransportError) {
        if let serverName, SocketAddress(ip: serverName, port: 0) == nil {
            _ = taps_SSL_set_tlsext_host_name(ssl, serverName)
        }
        if context.parameters.verifiesPeer && checksPeerName {
            let param = SSL_get0_param(ssl)
            if let serverName, SocketAddress(ip: serverName, port: 0) == nil {
                SSL_set1_host(ssl, serverName)
            } else if let ip = serverName ?? peerAddress?.ipAddress {
                X509_VERIFY_PARAM_set1_ip_asc(param, ip)
            } else {
                throw .invalidArgument("cannot verify the server: no host name or address to check its certificate against")
            }
        }
        if offersCachedSession, let sessionKey, let session = context.session(for: sessionKey) {
            SSL_set_session(ssl, session)
            SSL_SESSION_free(session)
        }
    }

    /// Client, before the handshake starts: offers a copy of `session` for resumption (OpenSSL
    /// changes the session a connection resumed, so connections never share one).
    func offer(_ session: OpaquePointer) {
        guard let copy = SSL_SESSION_dup(session) else { return }
        SSL_set_session(ssl, copy)
        SSL_SESSION_free(copy)
    }

    /// Client: called with each new resumable session the server gives (TLS 1.3 tickets, a TLS 1.2
    /// session), borrowed for the call.
    var onNewSession: ((OpaquePointer) -> Void)?

    // MARK: Handshake

    func handshake() -> Progress {
        let status = SSL_do_handshake(ssl)
        if status == 1 {
            if let verdict = serverTrustVerdict() { return verdict }
            handshakeComplete = true
            if sealsApplicationRecords { SSL_set_msg_callback(ssl, nil) }  // the tickets are counted
            // Read now: a TLS 1.3 ticket arriving later replaces the session. A handshake on an
            // external PSK counts as reused in OpenSSL, but nothing was resumed.
            resumed = SSL_session_reused(ssl) == 1 && !(SSL_get_session(ssl).map(ExternalPSK.isExternal) ?? false)
            return .complete
        }
        let error = SSL_get_error(ssl, status)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return .needMoreData }
        // A callback is running (TLSEngine+Callbacks); it resumes the handshake when it answers.
        if error == SSL_ERROR_WANT_X509_LOOKUP || error == SSL_ERROR_WANT_RETRY_VERIFY { return .needMoreData }
        return .failed(classifyFailure(status: status, during: "TLS handshake"))
    }

    /// Feeds ciphertext that arrived. Advances the handshake if it is running, then hands every
    /// decrypted byte to `deliver` (borrowed for the call).
    func feed(_ ciphertext: UnsafeRawBufferPointer, handshakeDone: () -> Void, deliver: ([UInt8]) -> Void) -> ReadOutcome {
        if awaitingCallback {
            stashedInbound.append(Array(ciphertext))
            return .ok
        }
        buffers.inbound = ciphertext
        defer { buffers.inbound = UnsafeRawBufferPointer(start: nil, count: 0) }
        let outcome = process(handshakeDone: handshakeDone, deliver: deliver)
        if let failure = resealFailure { return .failed(failure) }
        // OpenSSL keeps a 16 KB record buffer per direction once it has used one; an idle
        // connection needs neither, and a busy one gets them back at the next record.
        if !datagram, SSL_has_pending(ssl) == 0 { SSL_free_buffers(ssl) }
        // The handshake stopped for a callback before OpenSSL read everything: keep the rest.
        if awaitingCallback && !buffers.inbound.isEmpty { stashedInbound.append(Array(buffers.inbound)) }
        return outcome
    }

    /// A callback answered: the handshake goes on, then the ciphertext that waited is fed.
    func resumeAfterCallback(handshakeDone: () -> Void, deliver: ([UInt8]) -> Void) -> ReadOutcome {
        var outcome = process(handshakeDone: handshakeDone, deliver: deliver)
        while !awaitingCallback, case .ok = outcome, !stashedInbound.isEmpty {
            let next = stashedInbound.removeFirst()
            outcome = next.withUnsafeBytes { feed($0, handshakeDone: handshakeDone, deliver: deliver) }
        }
        return outcome
    }

    func callbackDidFinish() {
        awaitingCallback = false
        onCallbackCompleted?()
    }

    /// The byte stream below ended: what OpenSSL still holds is read, then a missing close_notify
    /// is reported as truncation.
    func feedEndOfStream(handshakeDone: () -> Void, deliver: ([UInt8]) -> Void) -> ReadOutcome {
        if awaitingCallback { return .failed(.connectionReset("the peer closed the connection during the TLS handshake")) }
        buffers.inboundEnded = true
        return process(handshakeDone: handshakeDone, deliver: deliver)
    }

    private func process(handshakeDone: () -> Void, deliver: ([UInt8]) -> Void) -> ReadOutcome {
        if !handshakeComplete {
            switch handshake() {
            case .needMoreData:
                if buffers.inboundEnded { return .failed(.connectionReset("the peer closed the connection during the TLS handshake")) }
                return .ok
            case .failed(let error): return .failed(error)
            case .complete: handshakeDone()
            }
        }
        if readerAwaitsFirstRecord { return .ok }
        if let reader = recordReaderTakingOver() { return openRecords(with: reader, deliver: deliver) }
        openingDeclined = true  // OpenSSL reads from here on, so only it knows the record numbers
        while true {
            if let status = decryptArray(deliver: deliver) { return status }
        }
    }

    /// Decrypts into one new array and hands it to `deliver` if anything was decrypted; nil when the
    /// array filled up (there may be more), else the outcome of the read.
    private func decryptArray(deliver: ([UInt8]) -> Void) -> ReadOutcome? {
        var status: ReadOutcome?
        let plaintext = [UInt8](unsafeUninitializedCapacity: plaintextBound) { buffer, filled in
            filled = 0
            status = readRecords(into: buffer, filled: &filled)
        }
        if !plaintext.isEmpty { deliver(plaintext) }
        return status
    }

    /// The most plaintext that can come out now: as much as the ciphertext being fed (plaintext is
    /// never longer), what OpenSSL decrypted and has not handed out, and a record begun in an
    /// earlier read. One array of this size takes a whole read, so a bulk receiver gets one message
    /// per socket read (256 KB on TLS streams) rather than several, each costing a trip through the
    /// connection and the application's task: taps-bench tls-tcp went from 0.77 to 0.93 of the C
    /// baseline (paired medians of 14 alternating runs) against 64 KB arrays. A small message gets
    /// an array its own size. Arrays above glibc's initial mmap threshold are fine: the threshold
    /// rises to the size of the first one freed.
    private var plaintextBound: Int {
        let partialRecord = SSL_has_pending(ssl) == 1 ? Self.recordPlaintextLimit : 0
        return max(1, buffers.inbound.count + Int(SSL_pending(ssl)) + partialRecord)
    }

    /// Decrypts records into `buffer` until it is full (nil: call again) or OpenSSL needs more
    /// ciphertext or the stream ended (the outcome).
    private func readRecords(into buffer: UnsafeMutableBufferPointer<UInt8>, filled: inout Int) -> ReadOutcome? {
        while filled < buffer.count {
            var count = 0
            if SSL_read_ex(ssl, buffer.baseAddress! + filled, buffer.count - filled, &count) == 1 {
                filled += count
                // On DTLS each record is one message: hand it up on its own.
                if datagram { return nil }
                continue
            }
            switch SSL_get_error(ssl, 0) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return .ok
            case SSL_ERROR_ZERO_RETURN:
                receivedCloseNotify = true
                return .closeNotify
            default:
                if buffers.inboundEnded {
                    ERR_clear_error()
                    return .failed(.truncated("the peer closed the connection without a TLS close_notify; data may be missing"))
                }
                return .failed(classifyFailure(status: 0, during: "TLS record"))
            }
        }
        return nil
    }

    // MARK: Writing

    /// Encrypts `bytes` into the outbound buffer.
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportError? {
        guard bytes.count > 0 else { return nil }
        if let writer = recordWriterTakingOver() { return sealRecords(bytes, with: writer) }
        if buffers.framing == .stream {
            // Room for all the ciphertext at once: grown record by record, the array would be
            // reallocated (and the records before copied again) partway through a 64 KB write.
            buffers.outbound.reserveCapacity(buffers.outbound.count + Self.ciphertextSize(ofPlaintext: bytes.count))
        }
        var written = 0
        guard SSL_write_ex(ssl, bytes.baseAddress, bytes.count, &written) == 1, written == bytes.count else {
            return classifyFailure(status: 0, during: "TLS write")
        }
        return nil
    }

    /// Record framing (RFC 3436 section 3.2: each record is one SCTP user message): when one packet
    /// carries most of a maximum-size record but not all of it, as on large path MTUs, a full record
    /// would spend a second packet on its last few bytes. Records then carry at most what fits one
    /// `fragment` (the bytes of a message one packet holds), which halves the packets. On smaller
    /// paths a record spans many packets anyway, and records stay full-size.
    func fitRecords(toMessageFragment fragment: Int) {
        guard let limit = Self.recordPlaintextLimit(forMessageFragment: fragment) else { return }
        _ = SSL_ctrl(ssl, SSL_CTRL_SET_MAX_SEND_FRAGMENT, limit, nil)
        recordContentLimit = limit
    }

    /// The plaintext per record that keeps a record within one `fragment`; nil to stay at 16 KB.
    static func recordPlaintextLimit(forMessageFragment fragment: Int) -> Int? {
        let fitted = fragment - recordOverheadBound
        guard fitted >= recordPlaintextLimit / 2, fitted < recordPlaintextLimit else { return nil }
        return fitted
    }

    /// The most a record adds to its plaintext: header (5), explicit IV (16), MAC (48, SHA-384) and
    /// CBC padding (16) on TLS 1.2; header, content type and tag (22) on TLS 1.3.
    static let recordOverheadBound = 85

    /// An upper bound on the records `plaintext` bytes become: at most 16 KB of plaintext per record
    /// (RFC 8446 section 5.1), each adding at most `recordOverheadBound`.
    static func ciphertextSize(ofPlaintext plaintext: Int) -> Int {
        plaintext + (plaintext / recordPlaintextLimit + 1) * recordOverheadBound
    }

    /// Queues a close_notify alert.
    func shutdown() {
        if SSL_shutdown(ssl) < 0 { ERR_clear_error() }
    }

    /// Hands the ciphertext waiting to be sent to `body` and empties the buffer: one array for a
    /// stream, one per datagram (DTLS) or per record (record framing); `isLast` marks the final call.
    func drainOutbound(_ body: ([UInt8], _ isLast: Bool) -> Void) {
        if buffers.framing != .stream {
            let units = buffers.outboundUnits
            buffers.outboundUnits.removeAll()
            for (index, unit) in units.enumerated() { body(unit, index == units.count - 1) }
            return
        }
        guard !buffers.outbound.isEmpty else { return }
        let pending = buffers.outbound
        buffers.outbound = []
        body(pending, true)
    }

    /// DTLS: the most application data one record (one datagram) carries at the configured MTU.
    var maximumRecordPayload: Int { Int(DTLS_get_data_mtu(ssl)) }

    var hasOutbound: Bool { !buffers.outbound.isEmpty || !buffers.outboundUnits.isEmpty }

    /// Every record leaves as its own write (see `EngineBIO.OutputFraming.recordPerWrite`).
    var recordPerWrite: Bool { buffers.framing == .recordPerWrite }

    // MARK: Key export and key update (RFC 8922 SSKE, KU)

    /// KeyUpdate messages received from the peer and not yet reported.
    var peerKeyUpdates = 0

    /// Keying material from the session (RFC 5705; RFC 8446 section 7.5 on TLS 1.3).
    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        guard handshakeComplete else { throw .invalidArgument("keying material can be exported only after the handshake") }
        try KeyingMaterialExport.validate(label: label, length: length)
        var output = [UInt8](repeating: 0, count: length)
        let labelBytes = Array(label.utf8)
        let contextBytes = context ?? []
        let status = labelBytes.withUnsafeBufferPointer { labelPointer in
            labelPointer.withMemoryRebound(to: CChar.self) { labelChars in
                SSL_export_keying_material(ssl, &output, length, labelChars.baseAddress, labelBytes.count,
                                           contextBytes, contextBytes.count, context == nil ? 0 : 1)
            }
        }
        guard status == 1 else { throw TLSContext.lastError(.invalidArgument, "keying material export") }
        return output
    }

    /// The session as bytes for `SecurityParameters.resumptionSession` (CM), or nil when the peer
    /// has not (yet) given one that can be resumed: a TLS 1.3 ticket arrives after the handshake.
    func exportSession() -> [UInt8]? {
        guard let session = SSL_get1_session(ssl) else { return nil }
        defer { SSL_SESSION_free(session) }
        guard context.sessionCache.isUsable(session) else { return nil }
        return TLSSessionCache.encode(session)
    }

    /// The connection runs TLS 1.3 (once the handshake chose the version).
    var negotiatedTLS13: Bool { !datagram && SSL_version(ssl) == TLS1_3_VERSION }

    /// Queues a TLS 1.3 KeyUpdate, asking the peer to update its keys too when `requestPeer`.
    func updateKeys(requestPeer: Bool) throws(TransportError) {
        guard negotiatedTLS13 else {
            throw .notSupported("KeyUpdate needs TLS 1.3; this connection uses \(String(cString: SSL_get_version(ssl)))")
        }
        guard SSL_key_update(ssl, requestPeer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) == 1 else {
            throw TLSContext.lastError(.invalidArgument, "KeyUpdate")
        }
        // Keys OpenSSL moves on from before the writer takes over leave the sealing to OpenSSL.
        if recordWriter == nil { sealingDeclined = true }
        // The message leaves with the next write or handshake call; this sends it now.
        if SSL_do_handshake(ssl) != 1 { ERR_clear_error() }
    }

    // MARK: DTLS retransmission and cookies

    /// Milliseconds until DTLS wants to retransmit its last flight, or nil when no timer runs.
    var retransmissionTimeout: Int? {
        let milliseconds = taps_DTLS_get_timeout_ms(ssl)
        return milliseconds >= 0 ? milliseconds : nil
    }

    /// Retransmits the last flight if its timer expired; false once DTLS gives up.
    func handleRetransmissionTimeout() -> Bool {
        taps_DTLS_handle_timeout(ssl) >= 0
    }

    /// Runs `DTLSv1_listen` on one datagram from `peer`: true when it is a ClientHello carrying a
    /// valid cookie (this engine then continues that handshake); otherwise a HelloVerifyRequest may
    /// be waiting in the outbound buffer. Keeps no state about the peer (RFC 6347 section 4.2.1).
    func listen(_ datagram: UnsafeRawBufferPointer, from peer: SocketAddress) -> Bool {
        cookiePeer = peer
        buffers.inbound = datagram
        defer { buffers.inbound = UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let address = BIO_ADDR_new() else { return false }
        defer { BIO_ADDR_free(address) }
        let result = DTLSv1_listen(ssl, address)
        ERR_clear_error()
        if result == 1 {
            // The handshake goes on with this peer, and OpenSSL checks the cookie once more then.
            continuesHandshake = true
            return true
        }
        cookiePeer = nil
        return false
    }

    // MARK: Negotiated parameters

    var details: SecurityDetails {
        let alpn: String? = {
            var data: UnsafePointer<UInt8>?
            var length: UInt32 = 0
            SSL_get0_alpn_selected(ssl, &data, &length)
            guard let data, length > 0 else { return nil }
            return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
        }()
        var subject: String?
        if let certificate = taps_SSL_get_peer_certificate(ssl) {
            if let name = X509_NAME_oneline(X509_get_subject_name(certificate), nil, 0) {
                subject = String(cString: name)
                CRYPTO_free(name, nil, 0)
            }
            X509_free(certificate)
        }
        return SecurityDetails(
            protocolVersion: String(cString: SSL_get_version(ssl)),
            cipherSuite: SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "none",
            group: {
                let id = taps_SSL_get_negotiated_group(ssl)
                return id > 0 ? SSL_group_to_name(ssl, id).map { String(cString: $0) } : nil
            }(),
            applicationProtocol: alpn,
            serverName: SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) },
            peerCertificateSubject: subject,
            resumed: resumed)
    }

    // MARK: Errors

    /// Turns OpenSSL's verdict into a typed error: certificate problems first (the verify result
    /// says exactly what was wrong), then garbage on the wire, then the library's text.
    func classifyFailure(status: Int32, during operation: String) -> TransportError {
        if let callbackError {
            ERR_clear_error()
            return callbackError
        }
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            ERR_clear_error()
            let reason = String(cString: X509_verify_cert_error_string(verify))
            switch Int32(verify) {
            case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
                return .hostnameMismatch("the peer's certificate does not match the expected name: \(reason)")
            default:
                return .certificateRejected("the peer's certificate was rejected: \(reason)")
            }
        }
        let (code, message) = TLSContext.drainError()
        let text = code == 0 ? "connection failed" : message
        switch taps_ERR_reason(code) {
        case SSL_R_WRONG_VERSION_NUMBER, SSL_R_PACKET_LENGTH_TOO_LONG,
             SSL_R_HTTP_REQUEST, SSL_R_UNEXPECTED_MESSAGE, SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC,
             SSL_R_UNEXPECTED_RECORD, SSL_R_WRONG_VERSION_NUMBER, SSL_R_LENGTH_MISMATCH:
            return .protocolViolation("\(operation): the peer sent bytes that are not valid TLS (\(text))")
        default:
            return .handshakeFailed("\(operation): \(text)")
        }
    }
}
