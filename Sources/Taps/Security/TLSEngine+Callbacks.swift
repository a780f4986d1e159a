internal import COpenSSL
internal import CTapsShims

/// The application's handshake callbacks (RFC 9622 section 6.3.7) on OpenSSL's suspension points:
/// the certificate callback returns -1 (SSL_ERROR_WANT_X509_LOOKUP) while the identity challenge
/// runs, and a client's verification callback asks for a retry (SSL_set_retry_verify,
/// SSL_ERROR_WANT_RETRY_VERIFY) while the trust verifier runs. When the Swift callback finishes,
/// the engine resumes the handshake on its loop. OpenSSL 3.0 offers the verification retry on
/// clients only, so a server consults its verifier once the handshake completed, before anything
/// is delivered.
extension TLSContext {
    func configureCallbacks() {
        if parameters.identityChallenge != nil {
            SSL_CTX_set_cert_cb(context, { ssl, _ in
                guard let engine = TLSEngine.from(ssl) else { return 0 }
                return engine.identityRequested()
            }, nil)
        }
        if parameters.trustVerifier != nil {
            SSL_CTX_set_cert_verify_callback(context, { store, _ in
                guard let store, let ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()),
                      let engine = TLSEngine.from(OpaquePointer(ssl)) else { return 0 }
                return engine.verifyPeer(store)
            }, nil)
        }
    }
}

/// Where an asynchronous callback stands for one connection.
enum CallbackState<Answer> {
    case notAsked
    case pending
    case answered(Answer)
    case used
}

extension TLSEngine {
    static func from(_ ssl: OpaquePointer?) -> TLSEngine? {
        guard let ssl, let data = SSL_get_ex_data(ssl, 0) else { return nil }
        return Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue()
    }

    private var role: IdentityChallenge.Role { context.role == .client ? .client : .server }

    /// Runs `work` off the loop, then `apply` on it, and resumes the handshake. The engine is held
    /// weakly: a connection closed meanwhile just drops the answer.
    private func runCallback<T: Sendable>(_ work: @escaping @Sendable () async -> T, then apply: @escaping (TLSEngine, T) -> Void) {
        guard let loop else {
            callbackError = .invalidArgument("a handshake callback ran on an engine without an event loop")
            return
        }
        awaitingCallback = true
        let engine = LoopBound(self)
        let applying = LoopConfined(value: apply)
        Task {
            let answer = await work()
            loop.execute {
                guard let engine = engine.value else { return }
                applying.value(engine, answer)
                engine.callbackDidFinish()
            }
        }
    }

    // MARK: Identity challenge (IPK)

    /// OpenSSL's certificate callback: 1 to go on, 0 to fail, -1 to suspend.
    fileprivate func identityRequested() -> Int32 {
        switch identityState {
        case .notAsked:
            guard let handler = context.parameters.identityChallenge else { return 1 }
            let challenge = IdentityChallenge(
                role: role,
                serverName: role == .server ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) } : expectedServerName,
                acceptableIssuers: role == .client ? acceptableIssuers() : [])
            identityState = .pending
            runCallback({ () async -> Result<SecurityParameters.Identity?, any Error> in
                do { return .success(try await handler.body(challenge)) } catch { return .failure(error) }
            }, then: { engine, answer in engine.identityState = .answered(answer) })
            return -1
        case .pending:
            return -1
        case .used:
            return 1
        case .answered(let answer):
            identityState = .used
            switch answer {
            case .success(let identity?):
                do throws(TransportError) {
                    try use(identity)
                    return 1
                } catch {
                    callbackError = error
                    return 0
                }
            case .success(nil):
                if role == .client { return 1 }  // the server decides whether it needs one
                callbackError = .invalidCredentials("the identity challenge supplied no identity for \(challengeName)")
                return 0
            case .failure(let error):
                callbackError = .invalidCredentials("the identity challenge failed: \(error)")
                return 0
            }
        }
    }

    private var challengeName: String {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { "server name \(String(cString: $0))" } ?? "a client without SNI"
    }

    private func acceptableIssuers() -> [String] {
        guard let names = SSL_get_client_CA_list(ssl) else { return [] }
        return (0..<OPENSSL_sk_num(names)).compactMap { index in
            guard let name = OPENSSL_sk_value(names, index),
                  let line = X509_NAME_oneline(OpaquePointer(name), nil, 0) else { return nil }
            defer { CRYPTO_free(line, nil, 0) }
            return String(cString: line)
        }
    }

    private func use(_ identity: SecurityParameters.Identity) throws(TransportError) {
        try Credentials.install(identity, certificate: { SSL_use_certificate(ssl, $0) }, chain: { taps_SSL_add1_chain_cert(ssl, $0) },
                                key: { SSL_use_PrivateKey(ssl, $0) }, check: { SSL_check_private_key(ssl) })
    }

    // MARK: Trust verification (IV)

    /// OpenSSL's verification callback: 1 trusted, 0 rejected; a client suspends for the verifier.
    fileprivate func verifyPeer(_ store: OpaquePointer) -> Int32 {
        switch trustState {
        case .notAsked:
            guard let verifier = context.parameters.trustVerifier else { return X509_verify_cert(store) }
            let challenge = trustChallenge(store)
            if role == .server {
                // Decided after the handshake (see `serverTrustVerdict`).
                serverTrustChallenge = challenge
                X509_STORE_CTX_set_error(store, X509_V_OK)
                return 1
            }
            trustState = .pending
            runCallback({ await verifier.body(challenge) }, then: { engine, decision in engine.trustState = .answered(decision) })
            return taps_SSL_set_retry_verify(ssl)
        case .pending:
            return taps_SSL_set_retry_verify(ssl)
        case .answered(let decision):
            return apply(decision, to: store)
        case .used:
            return 1
        }
    }

    private func apply(_ decision: TrustDecision, to store: OpaquePointer) -> Int32 {
        switch decision {
        case .trust:
            X509_STORE_CTX_set_error(store, X509_V_OK)
            return 1
        case .reject(let reason):
            X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION)
            callbackError = .certificateRejected("the trust verifier rejected the peer: \(reason)")
            return 0
        }
    }

    /// Runs OpenSSL's own validation to give the verifier the default verdict, and collects the chain.
    private func trustChallenge(_ store: OpaquePointer) -> TrustChallenge {
        let valid = X509_verify_cert(store) == 1
        let error = valid ? nil : String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(store))))
        ERR_clear_error()
        let chain = Credentials.derChain(leaf: X509_STORE_CTX_get0_cert(store), sent: X509_STORE_CTX_get0_untrusted(store))
        return TrustChallenge(role: role, peerChain: chain, defaultValidationError: error, serverName: expectedServerName)
    }

    /// Server: once the handshake completed, the verifier's verdict on the client's chain. Nil when
    /// the connection may be delivered; `.needMoreData` while the verifier runs.
    func serverTrustVerdict() -> Progress? {
        guard let challenge = serverTrustChallenge, let verifier = context.parameters.trustVerifier else { return nil }
        switch trustState {
        case .notAsked:
            trustState = .pending
            runCallback({ await verifier.body(challenge) }, then: { engine, decision in engine.trustState = .answered(decision) })
            return .needMoreData
        case .pending:
            return .needMoreData
        case .answered(let decision):
            if case .reject(let reason) = decision {
                return .failed(.certificateRejected("the trust verifier rejected the client: \(reason)"))
            }
            serverTrustChallenge = nil
            return nil
        case .used:
            return nil
        }
    }
}
