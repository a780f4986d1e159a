internal import COpenSSL
internal import CTapsShims
import Synchronization

/// An OpenSSL `SSL_CTX` built from `SecurityParameters` for one role. Built once per Preconnection
/// (or Listener), before any packet is sent, so bad credentials fail early; shared by the
/// connections of a group, which is what lets a clone resume the group's TLS session.
final class TLSContext: @unchecked Sendable {
    // @unchecked Sendable: the SSL_CTX is not modified after init (OpenSSL locks its session cache
    // internally); the session cache has its own lock.
    let context: OpaquePointer
    let role: Role
    let parameters: SecurityParameters
    /// DTLS rather than TLS.
    let datagram: Bool
    /// DTLS server: the key its address cookies are made with (RFC 6347 section 4.2.1).
    private let cookieSecret: [UInt8]
    /// Server: a context per SNI host name, each with that name's identity.
    private var contextsByServerName: [String: TLSContext] = [:]
    private let alpnWire: [UInt8]
    /// Client: where new sessions go and resumed ones come from.
    let sessionCache: TLSSessionCache
    /// Client: `SecurityParameters.resumptionSession`, decoded once.
    private let importedSession: OpaquePointer?
    /// PSKI: the key as OpenSSL sessions and callbacks need it (see TLSContext+PSK).
    var externalPSK: ExternalPSK?
    /// Where the connections' secrets go (`SecurityParameters.keyLog`, else `SSLKEYLOGFILE`).
    let keyLog: KeyLog?

    enum Role { case client, server }

    /// `defersTrustDecision`: a chain that does not validate does not fail the handshake; its
    /// verdict is left in the verify result for a trust verifier that runs afterwards (the DTLS
    /// chunk's TLS 1.3 key management, which consults it as the DTLS 1.3 method does).
    init(_ parameters: SecurityParameters, role: Role, datagram: Bool = false, defersTrustDecision: Bool = false) throws(TransportError) {
        let method = datagram ? (role == .client ? DTLS_client_method() : DTLS_server_method())
                              : (role == .client ? TLS_client_method() : TLS_server_method())
        guard let context = SSL_CTX_new(method) else { throw TLSContext.lastError(.handshakeFailed, "SSL_CTX_new") }
        self.context = context
        self.role = role
        self.parameters = parameters
        self.datagram = datagram
        var secret = [UInt8](repeating: 0, count: 32)
        if datagram && role == .server { RAND_bytes(&secret, Int32(secret.count)) }
        cookieSecret = secret
        keyLog = parameters.keyLog ?? .environment
        alpnWire = parameters.applicationProtocols.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        sessionCache = parameters.sessionCache
            ?? TLSSessionCache(maxSessions: parameters.maxCachedSessions, lifetimeSeconds: parameters.cachedSessionLifetimeSeconds)
        // A session the DTLS chunk's key management exported is not one for OpenSSL.
        if let bytes = parameters.resumptionSession, role == .client, !bytes.starts(with: HandshakeKeyManagement.exportedSessionPrefix) {
            guard let session = try? TLSSessionCache.decode(bytes) else {
                SSL_CTX_free(context)
                throw .invalidArgument("resumptionSession: not a TLS session exported by exportSession()")
            }
            importedSession = session
        } else {
            importedSession = nil
        }
        // A throw from here on still runs deinit (every property is set), which frees the context.
        try configureVersions(datagram: datagram)
        try configureTrust(defersDecision: defersTrustDecision)
        try configureIdentity()
        try configureALPN()
        try configureAlgorithms()
        try configurePreSharedKey()
        configureSessions()
        configureCallbacks()
        try configureServerNames()
        if datagram && role == .server { configureCookies() }
        if keyLog != nil || !datagram { configureKeyLog() }
    }

    /// OpenSSL hands each secret over as one NSS key log line; the engine (ex data 0) knows its
    /// context. An engine that seals its own records takes its traffic secret from it too.
    private func configureKeyLog() {
        SSL_CTX_set_keylog_callback(context) { ssl, line in
            guard let line, let engine = TLSEngine.from(ssl) else { return }
            engine.noteKeyLogLine(line)
            engine.context.keyLog?.write(String(cString: line))
        }
    }

    deinit {
        if let importedSession { SSL_SESSION_free(importedSession) }
        SSL_CTX_free(context)
    }

    private func configureVersions(datagram: Bool) throws(TransportError) {
        if datagram {
            guard parameters.allowedVersions.contains(.dtls12) else { throw .invalidArgument("DTLS 1.2 is not among the allowed versions") }
            _ = taps_SSL_CTX_set_min_proto_version(context, DTLS1_2_VERSION)
            return
        }
        let tls = parameters.allowedVersions.intersection([.tls12, .tls13])
        guard let low = tls.min(), let high = tls.max() else {
            throw .invalidArgument("no TLS version allowed (allowedVersions: \(parameters.allowedVersions.map(\.rawValue).sorted()))")
        }
        // No read-ahead: our BIO hands OpenSSL bytes already in memory, so a header read and a body
        // read per record cost no system call, and each record then starts at the aligned offset
        // OpenSSL reserves for it (read ahead, records land anywhere in its buffer and are moved when
        // split at its end; the transfer took ~4 % more CPU per byte in a taps-bench A/B).
        _ = taps_SSL_CTX_set_read_ahead(context, 0)
        _ = taps_SSL_CTX_set_mode(context, Int(SSL_MODE_RELEASE_BUFFERS))
        _ = taps_SSL_CTX_set_min_proto_version(context, low == .tls12 ? TLS1_2_VERSION : TLS1_3_VERSION)
        _ = taps_SSL_CTX_set_max_proto_version(context, high == .tls12 ? TLS1_2_VERSION : TLS1_3_VERSION)
    }

    private func configureTrust(defersDecision: Bool) throws(TransportError) {
        // A trust verifier sees every peer chain, so a server with one asks clients for theirs.
        let hasVerifier = parameters.trustVerifier != nil
        let verify = role == .client ? parameters.verifiesPeer || hasVerifier : parameters.requireClientCertificate || hasVerifier
        guard verify else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
            return
        }
        var mode = SSL_VERIFY_PEER
        if role == .server && parameters.requireClientCertificate { mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
        // With the decision deferred, OpenSSL still validates and records the verdict.
        SSL_CTX_set_verify(context, mode, defersDecision ? { _, _ in 1 } : nil)
        switch parameters.trustedRoots {
        case .system:
            SSL_CTX_set_default_verify_paths(context)
        case .pem(let source):
            let certificates = try Credentials.certificates(source.load(), what: "trusted roots")
            let store = SSL_CTX_get_cert_store(context)
            for certificate in certificates {
                X509_STORE_add_cert(store, certificate)
                // A server names its roots in the certificate request (RFC 8446 section 4.2.4).
                if role == .server { SSL_CTX_add_client_CA(context, certificate) }
                X509_free(certificate)
            }
        }
    }

    private func configureIdentity() throws(TransportError) {
        guard let identity = parameters.localIdentity else {
            // A server may instead authenticate with a PSK or get its identity per ClientHello.
            if role == .server && parameters.preSharedKey == nil && parameters.identityChallenge == nil {
                throw .invalidCredentials("a TLS server needs a certificate and private key (SecurityParameters.localIdentity), an identityChallenge handler or a preSharedKey")
            }
            return
        }
        try Credentials.install(identity, certificate: { SSL_CTX_use_certificate(context, $0) },
                                chain: { taps_SSL_CTX_add1_chain_cert(context, $0) },
                                key: { SSL_CTX_use_PrivateKey(context, $0) }, check: { SSL_CTX_check_private_key(context) })
    }

    /// EXT (SNI, RFC 6066 section 3): the server switches to the context whose identity matches the
    /// requested name. Built here, so a bad certificate for any name fails before listening.
    private func configureServerNames() throws(TransportError) {
        guard role == .server, !parameters.identitiesByServerName.isEmpty else { return }
        for (name, identity) in parameters.identitiesByServerName {
            var perName = parameters
            perName.localIdentity = identity
            perName.identitiesByServerName = [:]
            contextsByServerName[name.lowercased()] = try TLSContext(perName, role: .server, datagram: datagram)
        }
        taps_SSL_CTX_set_servername_callback(context, { ssl, _, arg in
            guard let ssl, let arg, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_OK }
            let tls = Unmanaged<TLSContext>.fromOpaque(arg).takeUnretainedValue()
            if let match = tls.contextsByServerName[String(cString: name).lowercased()] {
                SSL_set_SSL_CTX(ssl, match.context)
            }
            return SSL_TLSEXT_ERR_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// ALG: each list is checked by OpenSSL, and a name it does not know is an error naming the
    /// parameter and the list, before any packet is sent.
    private func configureAlgorithms() throws(TransportError) {
        let algorithms = parameters.algorithms
        let settings: [(String, [String], (String) -> Int32)] = [
            ("tls13CipherSuites", algorithms.tls13CipherSuites, { SSL_CTX_set_ciphersuites(self.context, $0) }),
            ("tls12Ciphers", algorithms.tls12Ciphers, { SSL_CTX_set_cipher_list(self.context, $0) }),
            ("groups", algorithms.groups, { taps_SSL_CTX_set1_groups_list(self.context, $0) }),
            ("signatureAlgorithms", algorithms.signatureAlgorithms, { taps_SSL_CTX_set1_sigalgs_list(self.context, $0) }),
        ]
        for (name, values, apply) in settings where !values.isEmpty {
            let list = values.joined(separator: ":")
            guard !values.contains(where: \.isEmpty), apply(list) == 1 else {
                ERR_clear_error()
                throw .invalidArgument("\(name): OpenSSL does not support \"\(list)\" (unknown or unavailable name)")
            }
        }
    }

    private func configureALPN() throws(TransportError) {
        guard !parameters.applicationProtocols.isEmpty else { return }
        for name in parameters.applicationProtocols where name.isEmpty || name.utf8.count > 255 {
            throw .invalidArgument("ALPN protocol names must be 1 to 255 bytes, got \"\(name)\"")
        }
        switch role {
        case .client:
            _ = alpnWire.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(context, $0.baseAddress, UInt32($0.count)) }
        case .server:
            SSL_CTX_set_alpn_select_cb(context, { _, out, outLength, offered, offeredLength, arg in
                guard let arg, let out, let outLength else { return SSL_TLSEXT_ERR_NOACK }
                let tls = Unmanaged<TLSContext>.fromOpaque(arg).takeUnretainedValue()
                // The server picks by its own preference order (RFC 7301 section 3.2).
                let result = tls.alpnWire.withUnsafeBufferPointer { ours -> Int32 in
                    var selected: UnsafeMutablePointer<UInt8>?
                    var selectedLength: UInt8 = 0
                    let status = SSL_select_next_proto(&selected, &selectedLength, ours.baseAddress, UInt32(ours.count), offered, offeredLength)
                    guard status == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_ALERT_FATAL }
                    // `selected` points into `alpnWire`, which lives as long as the context.
                    out.pointee = UnsafePointer(selected)
                    outLength.pointee = selectedLength
                    return SSL_TLSEXT_ERR_OK
                }
                return result
            }, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    private func configureSessions() {
        if role == .server {
            let id: [UInt8] = Array("swift-taps".utf8)
            SSL_CTX_set_session_id_context(context, id, UInt32(id.count))
            // TLS 1.2 session ids live in this cache; TLS 1.3 tickets carry this lifetime.
            _ = taps_SSL_CTX_sess_set_cache_size(context, max(1, parameters.maxCachedSessions))
            SSL_CTX_set_timeout(context, max(1, parameters.cachedSessionLifetimeSeconds))
            if parameters.maxCachedSessions == 0 { _ = taps_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_OFF)) }
            if parameters.sessionTickets { scopeTicketsToAssociations() } else { _ = taps_SSL_CTX_disable_session_tickets(context) }
        } else {
            _ = taps_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
            // New sessions (TLS 1.3 tickets, TLS 1.2 ids) go to the group's cache under the engine's key.
            SSL_CTX_sess_set_new_cb(context) { ssl, session in
                guard let ssl, let session, let data = SSL_get_ex_data(ssl, 0) else { return 0 }
                let engine = Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue()
                if let key = engine.sessionKey { engine.context.sessionCache.store(session, for: key) }
                engine.onNewSession?(session)
                return 0
            }
        }
    }

    // MARK: DTLS cookies

    private func configureCookies() {
        taps_SSL_CTX_enable_cookie_exchange(context)
        SSL_CTX_set_cookie_generate_cb(context) { ssl, cookie, length in
            guard let ssl, let cookie, let length, let mac = TLSContext.cookie(for: ssl) else { return 0 }
            mac.withUnsafeBufferPointer { cookie.update(from: $0.baseAddress!, count: mac.count) }
            length.pointee = UInt32(mac.count)
            return 1
        }
        SSL_CTX_set_cookie_verify_cb(context) { ssl, cookie, length in
            guard let ssl, let cookie, let mac = TLSContext.cookie(for: ssl), Int(length) == mac.count else { return 0 }
            // Constant-time comparison.
            return CRYPTO_memcmp(cookie, mac, mac.count) == 0 ? 1 : 0
        }
    }

    /// HMAC-SHA256 over the peer's address and port under the context's secret.
    private static func cookie(for ssl: OpaquePointer) -> [UInt8]? {
        guard let data = SSL_get_ex_data(ssl, 0) else { return nil }
        let engine = Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue()
        guard let peer = engine.cookiePeer else { return nil }
        let message = Array("\(peer.ipAddress)|\(peer.port)".utf8)
        var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let secret = engine.context.cookieSecret
        guard HMAC(EVP_sha256(), secret, Int32(secret.count), message, message.count, &mac, &length) != nil else { return nil }
        return Array(mac.prefix(Int(length)))
    }

    // MARK: Client sessions

    /// A session to offer to `key`'s server: the cache's, else the imported one. Retained for the
    /// caller, who frees it after SSL_set_session.
    func session(for key: String) -> OpaquePointer? {
        if let cached = sessionCache.session(for: key) { return cached }
        guard let importedSession, sessionCache.isUsable(importedSession) else { return nil }
        SSL_SESSION_up_ref(importedSession)
        return importedSession
    }

    /// The oldest queued OpenSSL error as a TransportError (and clears the queue).
    static func lastError(_ code: TransportError.Code, _ context: String) -> TransportError {
        let (error, message) = drainError()
        return TransportError(code, "\(context): \(error == 0 ? "unknown error" : message)")
    }

    /// The oldest queued OpenSSL error code and its text; clears the queue.
    static func drainError() -> (code: UInt, text: String) {
        var buffer = [CChar](repeating: 0, count: 256)
        let code = taps_ERR_drain(&buffer, buffer.count)
        return (code, String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

/// Contexts by security parameters and role, built on first use; and the DTLS chunk's settings by
/// parameters, so its DTLS 1.3 contexts and session cache live as long as the Preconnection.
final class TLSContextCache: Sendable {
    private struct Key: Hashable {
        let parameters: SecurityParameters
        let server: Bool
        let datagram: Bool
    }
    private let contexts = Mutex<[Key: TLSContext]>([:])
    private let chunkSettings = Mutex<[SecurityParameters: DTLSChunkSettings]>([:])

    func dtlsChunkSettings(for parameters: SecurityParameters) throws(TransportError) -> DTLSChunkSettings {
        if let cached = chunkSettings.withLock({ $0[parameters] }) { return cached }
        let settings = try DTLSChunkSettings(security: parameters)
        return chunkSettings.withLock { cache in
            if let raced = cache[parameters] { return raced }
            cache[parameters] = settings
            return settings
        }
    }

    func context(for parameters: SecurityParameters, role: TLSContext.Role, datagram: Bool = false) throws(TransportError) -> TLSContext {
        let key = Key(parameters: parameters, server: role == .server, datagram: datagram)
        if let cached = contexts.withLock({ $0[key] }) { return cached }
        let context = try TLSContext(parameters, role: role, datagram: datagram)
        return contexts.withLock { cache in
            if let raced = cache[key] { return raced }
            cache[key] = context
            return context
        }
    }
}
