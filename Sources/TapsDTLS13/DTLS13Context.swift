@_implementationOnly import CNIOBoringSSL
import Synchronization

/// What went wrong in DTLS 1.3, with BoringSSL's reason where it gave one.
public struct DTLS13Error: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A certificate, key or trust root could not be read.
        case invalidCredentials
        /// The peer's certificate chain did not validate against the trusted roots.
        case certificateRejected
        /// The handshake failed otherwise (an alert from the peer, no common parameters).
        case handshakeFailed
        /// Bytes that are not valid DTLS.
        case protocolViolation
    }

    public let kind: Kind
    public let message: String

    public var description: String { "\(kind): \(message)" }
}

/// A DTLS 1.3 endpoint's configuration. Authentication is mutual and by certificate: each end
/// presents its chain and validates the peer's against `trustedRootsPEM`.
public struct DTLS13Configuration: Sendable {
    public var certificateChainPEM: [UInt8]
    public var privateKeyPEM: [UInt8]
    public var trustedRootsPEM: [UInt8]
    /// Key-exchange groups in preference order (BoringSSL names: "X25519MLKEM768", "X25519",
    /// "P-256"); empty keeps BoringSSL's default, which offers X25519MLKEM768 first.
    public var groups: [String] = []
    /// The first retransmission timeout of a flight. Over a reliable transport (SCTP user messages)
    /// DTLS retransmission is not needed, so a long one keeps it out of the way.
    public var initialRetransmissionMilliseconds: UInt32 = 1_000
    /// The largest datagram (record plus headers) the engine writes.
    public var maximumDatagram: Int = 1_200
    /// Time for timers and certificate validity: the system's, or `DTLS13VirtualClock` (tests).
    public var usesVirtualClock = false
    /// Receives each secret as an NSS key log line (for Wireshark), from the engine's thread.
    public var keyLog: (@Sendable (String) -> Void)? = nil
    /// The application decides trust once the handshake is done (a trust verifier, pinning): a
    /// chain that fails validation is recorded in `DTLS13Engine.peerValidationError` instead of
    /// ending the handshake. A peer must still present a certificate and prove its key.
    public var defersTrustDecision = false
    /// A server issues session tickets, so clients can resume (RFC 8446 section 4.6.1).
    public var issuesSessionTickets = true

    public init(certificateChainPEM: [UInt8], privateKeyPEM: [UInt8], trustedRootsPEM: [UInt8]) {
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.trustedRootsPEM = trustedRootsPEM
    }
}

/// A clock tests move by hand. BoringSSL asks a context's time callback without saying which
/// connection asks, so the clock is one for the process; only contexts made with
/// `usesVirtualClock` read it.
public enum DTLS13VirtualClock {
    /// Milliseconds since the Unix epoch.
    public static let milliseconds = Atomic<UInt64>(1_790_000_000_000)

    public static func advance(byMilliseconds delta: UInt64) { milliseconds.add(delta, ordering: .relaxed) }
}

/// The shared part of DTLS 1.3 endpoints of one role and configuration (an SSL_CTX): DTLS 1.3 only,
/// certificates, trust roots, mutual authentication required.
public final class DTLS13Context: @unchecked Sendable {
    // @unchecked Sendable: the SSL_CTX is configured in init and only read afterwards.
    public enum Role: Sendable { case client, server }

    let raw: OpaquePointer
    public let role: Role
    let configuration: DTLS13Configuration

    public init(role: Role, configuration: DTLS13Configuration) throws(DTLS13Error) {
        guard let context = SSL_CTX_new(DTLS_method()) else {
            throw DTLS13Error(kind: .invalidCredentials, message: "SSL_CTX_new failed")
        }
        raw = context
        self.role = role
        self.configuration = configuration
        // DTLS 1.3 only (RFC 9147); no fallback to DTLS 1.2.
        SSL_CTX_set_min_proto_version(context, UInt16(DTLS1_3_VERSION))
        SSL_CTX_set_max_proto_version(context, UInt16(DTLS1_3_VERSION))
        try loadIdentity(configuration)
        try loadTrust(configuration.trustedRootsPEM)
        if !configuration.groups.isEmpty {
            let list = configuration.groups.joined(separator: ":")
            guard SSL_CTX_set1_groups_list(context, list) == 1 else {
                throw DTLS13Error(kind: .invalidCredentials, message: "unknown key-exchange group in \(list)")
            }
        }
        if configuration.defersTrustDecision {
            // Validation still runs and its verdict stays on the connection (SSL_get_verify_result).
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { _, _ in 1 }
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        if role == .client {
            // Sessions reach the engine that received them, which hands them out as bytes.
            SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_CLIENT)
            SSL_CTX_sess_set_new_cb(context) { ssl, session in
                if let ssl, let session { DTLS13Engine.sessionArrived(ssl, session) }
                return 0  // BoringSSL keeps its reference
            }
        } else if !configuration.issuesSessionTickets {
            SSL_CTX_set_options(context, UInt32(SSL_OP_NO_TICKET))
        }
        if configuration.keyLog != nil {
            // Each engine holds its context, so the context outlives every SSL made from it.
            SSL_CTX_set_ex_data(context, 0, Unmanaged.passUnretained(self).toOpaque())
            SSL_CTX_set_keylog_callback(context) { ssl, line in
                guard let ssl, let line, let data = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), 0) else { return }
                Unmanaged<DTLS13Context>.fromOpaque(data).takeUnretainedValue().configuration.keyLog?(String(cString: line))
            }
        }
        if configuration.usesVirtualClock {
            SSL_CTX_set_current_time_cb(context) { _, clock in
                let now = DTLS13VirtualClock.milliseconds.load(ordering: .relaxed)
                clock?.pointee.tv_sec = Int(now / 1_000)
                clock?.pointee.tv_usec = Int(now % 1_000) * 1_000
            }
        }
    }

    deinit { SSL_CTX_free(raw) }

    private func loadIdentity(_ configuration: DTLS13Configuration) throws(DTLS13Error) {
        let certificates = try Self.certificates(configuration.certificateChainPEM)
        defer { certificates.forEach { X509_free($0) } }
        guard let leaf = certificates.first else {
            throw DTLS13Error(kind: .invalidCredentials, message: "no certificate in the certificate chain")
        }
        guard SSL_CTX_use_certificate(raw, leaf) == 1 else {
            throw DTLS13Error(kind: .invalidCredentials, message: "BoringSSL refused the certificate")
        }
        for intermediate in certificates.dropFirst() where SSL_CTX_add1_chain_cert(raw, intermediate) != 1 {
            throw DTLS13Error(kind: .invalidCredentials, message: "BoringSSL refused a chain certificate")
        }
        let key = configuration.privateKeyPEM.withUnsafeBytes { bytes -> OpaquePointer? in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, bytes.count) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let key else { throw DTLS13Error(kind: .invalidCredentials, message: "the private key is not a PEM key BoringSSL reads") }
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(raw, key) == 1, SSL_CTX_check_private_key(raw) == 1 else {
            throw DTLS13Error(kind: .invalidCredentials, message: "the private key does not match the certificate")
        }
    }

    private func loadTrust(_ pem: [UInt8]) throws(DTLS13Error) {
        let roots = try Self.certificates(pem)
        defer { roots.forEach { X509_free($0) } }
        guard !roots.isEmpty else { throw DTLS13Error(kind: .invalidCredentials, message: "no trusted root certificate") }
        let store = SSL_CTX_get_cert_store(raw)
        for root in roots where X509_STORE_add_cert(store, root) != 1 {
            throw DTLS13Error(kind: .invalidCredentials, message: "BoringSSL refused a trusted root")
        }
    }

    /// Every certificate in a PEM text, in order (the caller frees them).
    static func certificates(_ pem: [UInt8]) throws(DTLS13Error) -> [OpaquePointer] {
        pem.withUnsafeBytes { bytes -> [OpaquePointer] in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, bytes.count) else { return [] }
            defer { BIO_free(bio) }
            var certificates: [OpaquePointer] = []
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { certificates.append(certificate) }
            ERR_clear_error()  // the end of the text reads as an error
            return certificates
        }
    }
}
