internal import COpenSSL
internal import CTapsShims

/// PSKI: the external PSK as OpenSSL's callbacks need it. The identity lives in memory of our own,
/// since the TLS 1.3 client callback hands OpenSSL a pointer that must outlive the call.
final class ExternalPSK {
    let parameters: PreSharedKey
    private let identityStorage: UnsafeMutableBufferPointer<UInt8>

    init(_ parameters: PreSharedKey) {
        self.parameters = parameters
        identityStorage = .allocate(capacity: parameters.identity.count)
        _ = identityStorage.initialize(from: parameters.identity)
    }

    deinit { identityStorage.deallocate() }

    var identity: UnsafePointer<UInt8> { UnsafePointer(identityStorage.baseAddress!) }

    func matches(_ identity: UnsafePointer<UInt8>?, length: Int) -> Bool {
        guard let identity, length == identityStorage.count else { return false }
        return UnsafeBufferPointer(start: identity, count: length).elementsEqual(identityStorage)
    }

    /// The TLS 1.3 suite the key is bound to: its hash is the PSK's (RFC 8446 section 4.2.11).
    private var cipherSuiteID: [UInt8] { parameters.hash == .sha384 ? [0x13, 0x02] : [0x13, 0x01] }

    /// A TLS 1.3 session carrying the key, as the PSK callbacks hand it to OpenSSL (which frees it).
    /// It is marked, so a handshake on it is not reported as a resumption.
    func session(for ssl: OpaquePointer) -> OpaquePointer? {
        guard let cipher = SSL_CIPHER_find(ssl, cipherSuiteID), let session = SSL_SESSION_new() else { return nil }
        guard SSL_SESSION_set1_master_key(session, parameters.key, parameters.key.count) == 1,
              SSL_SESSION_set_cipher(session, cipher) == 1,
              SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) == 1,
              SSL_SESSION_set_ex_data(session, Self.markIndex, Self.mark) == 1 else {
            SSL_SESSION_free(session)
            return nil
        }
        return session
    }

    /// Whether `session` is (a copy of) one made from the external PSK.
    static func isExternal(_ session: OpaquePointer) -> Bool {
        SSL_SESSION_get_ex_data(session, markIndex) == mark
    }

    nonisolated(unsafe) private static let mark = UnsafeMutableRawPointer(bitPattern: 0x7a95)!
    // Allocated once; OpenSSL's ex-data registry is thread-safe.
    private static let markIndex: Int32 = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_SESSION, 0, nil, nil, nil, nil)

    func handshakeDigestMatches(_ ssl: OpaquePointer, _ digest: OpaquePointer?) -> Bool {
        guard let digest else { return true }
        guard let cipher = SSL_CIPHER_find(ssl, cipherSuiteID) else { return false }
        return SSL_CIPHER_get_handshake_digest(cipher) == digest
    }

    /// TLS 1.2 / DTLS 1.2 suites: ECDHE-PSK (forward secret, AEAD) by default; the plain PSK AEAD
    /// suites only when key exchange without (EC)DHE is allowed. OpenSSL's defaults follow for
    /// certificate-based peers; the plain and RSA-PSK key exchanges are kept out otherwise.
    var tls12CipherList: String {
        parameters.allowsKeyExchangeWithoutDHE
            ? "ECDHE-PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305:DEFAULT:!kRSAPSK"
            : "ECDHE-PSK-CHACHA20-POLY1305:DEFAULT:!kPSK:!kRSAPSK:!kDHEPSK"
    }

    /// Copies the key into OpenSSL's buffer; 0 when it does not fit.
    func copyKey(into buffer: UnsafeMutablePointer<UInt8>?, capacity: UInt32) -> UInt32 {
        guard let buffer, parameters.key.count <= Int(capacity) else { return 0 }
        buffer.update(from: parameters.key, count: parameters.key.count)
        return UInt32(parameters.key.count)
    }
}

extension TLSContext {
    private static func psk(_ ssl: OpaquePointer?) -> ExternalPSK? {
        guard let ssl, let data = SSL_get_ex_data(ssl, 0) else { return nil }
        return Unmanaged<TLSEngine>.fromOpaque(data).takeUnretainedValue().context.externalPSK
    }

    /// Installs the PSK callbacks: TLS 1.3 through sessions (RFC 8446 section 4.2.11), TLS 1.2 and
    /// DTLS 1.2 through the PSK suites (RFC 4279, RFC 5489).
    func configurePreSharedKey() throws(TransportError) {
        guard let parameters = parameters.preSharedKey else { return }
        try parameters.validate()
        let psk = ExternalPSK(parameters)
        externalPSK = psk
        // psk_ke (no forward secrecy) only when asked for; psk_dhe_ke otherwise.
        if parameters.allowsKeyExchangeWithoutDHE { taps_SSL_CTX_allow_no_dhe_kex(context) }
        // An OpenSSL server picks the TLS 1.3 suite before it looks at PSKs and favours SHA-256
        // suites when a PSK is offered; a SHA-384 key works only where SHA-384 suites are all there is.
        if parameters.hash == .sha384 && self.parameters.algorithms.tls13CipherSuites.isEmpty {
            _ = SSL_CTX_set_ciphersuites(context, "TLS_AES_256_GCM_SHA384")
        }
        if self.parameters.algorithms.tls12Ciphers.isEmpty {
            guard SSL_CTX_set_cipher_list(context, psk.tls12CipherList) == 1 else {
                throw TLSContext.lastError(.invalidArgument, "PSK cipher suites")
            }
        }
        switch role {
        case .client:
            SSL_CTX_set_psk_use_session_callback(context) { ssl, digest, identity, identityLength, session in
                guard let ssl, let psk = TLSContext.psk(ssl), psk.handshakeDigestMatches(ssl, digest) else {
                    session?.pointee = nil
                    return 1
                }
                session?.pointee = psk.session(for: ssl)
                identity?.pointee = psk.identity
                identityLength?.pointee = psk.parameters.identity.count
                return 1
            }
            SSL_CTX_set_psk_client_callback(context) { ssl, _, identity, identityCapacity, key, keyCapacity in
                guard let psk = TLSContext.psk(ssl), let identity,
                      psk.parameters.identity.count < Int(identityCapacity) else { return 0 }
                let bytes = psk.parameters.identity.map { CChar(bitPattern: $0) } + [0]
                identity.update(from: bytes, count: bytes.count)
                return psk.copyKey(into: key, capacity: keyCapacity)
            }
        case .server:
            SSL_CTX_set_psk_find_session_callback(context) { ssl, identity, identityLength, session in
                // An unknown identity is not an error here: the handshake falls back to certificates.
                guard let ssl, let psk = TLSContext.psk(ssl), psk.matches(identity, length: identityLength) else {
                    session?.pointee = nil
                    return 1
                }
                session?.pointee = psk.session(for: ssl)
                return 1
            }
            SSL_CTX_set_psk_server_callback(context) { ssl, identity, key, keyCapacity in
                guard let psk = TLSContext.psk(ssl), let identity else { return 0 }
                let length = strlen(identity)
                let matches = identity.withMemoryRebound(to: UInt8.self, capacity: length) { psk.matches($0, length: length) }
                return matches ? psk.copyKey(into: key, capacity: keyCapacity) : 0
            }
        }
    }
}
