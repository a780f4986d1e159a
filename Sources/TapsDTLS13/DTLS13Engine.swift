@_implementationOnly import CNIOBoringSSL

/// One DTLS 1.3 connection (RFC 9147) on BoringSSL, sans-I/O: datagrams in, datagrams out, a timer
/// to service, plaintext both ways, and the exporter. Each datagram is kept whole in both directions
/// (a BIO that queues datagrams, not a byte stream). Not thread-safe: one owner at a time.
public final class DTLS13Engine {
    public enum State: Equatable, Sendable {
        case handshaking
        case established
        case failed(DTLS13Error)
        /// The peer's close_notify arrived, or `close()` was called.
        case closed
    }

    private let context: DTLS13Context
    private let ssl: OpaquePointer
    private let bio: OpaquePointer
    public private(set) var state: State = .handshaking
    /// Datagrams that arrived and BoringSSL has not read yet.
    fileprivate var incoming: [[UInt8]] = []
    /// Datagrams BoringSSL wrote, to be sent.
    fileprivate var outgoing: [[UInt8]] = []
    private var plaintext: [[UInt8]] = []
    fileprivate let maximumDatagram: Int
    /// Sessions the server gave (tickets), for `takeNewSessions()`.
    fileprivate var newSessions: [DTLS13Session] = []

    /// A client offers `session` (the bytes of one from `takeNewSessions()`, here or in an earlier
    /// connection to the same server) for resumption; BoringSSL falls back to a full handshake when
    /// the server cannot resume it. Resumption keeps the ephemeral key exchange (psk_dhe_ke).
    public init(context: DTLS13Context, resuming session: [UInt8]? = nil) throws(DTLS13Error) {
        guard let ssl = SSL_new(context.raw), let bio = BIO_new(DatagramBIO.method) else {
            throw DTLS13Error(kind: .handshakeFailed, message: "SSL_new failed")
        }
        self.context = context
        self.ssl = ssl
        self.bio = bio
        maximumDatagram = context.configuration.maximumDatagram
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
        BIO_up_ref(bio)  // one reference for the read side, one for the write side
        SSL_set_bio(ssl, bio, bio)
        SSL_set_options(ssl, UInt32(SSL_OP_NO_QUERY_MTU))
        SSL_set_mtu(ssl, UInt32(maximumDatagram))
        DTLSv1_set_initial_timeout_duration(ssl, context.configuration.initialRetransmissionMilliseconds)
        if context.role == .client { SSL_set_connect_state(ssl) } else { SSL_set_accept_state(ssl) }
        if let session, context.role == .client {
            guard let decoded = session.withUnsafeBufferPointer({ SSL_SESSION_from_bytes($0.baseAddress, $0.count, context.raw) }) else {
                throw DTLS13Error(kind: .invalidCredentials, message: "not a DTLS 1.3 session BoringSSL reads")
            }
            SSL_set_session(ssl, decoded)
            SSL_SESSION_free(decoded)
        }
    }

    /// Whether the handshake resumed a session (no certificates, psk_dhe_ke).
    public var resumed: Bool { SSL_session_reused(ssl) == 1 }

    /// The sessions the server has given since the last call (client only; DTLS 1.3 tickets come
    /// after the handshake), newest last.
    public func takeNewSessions() -> [DTLS13Session] {
        defer { newSessions.removeAll() }
        return newSessions
    }

    /// Called by BoringSSL for each new session of a client context.
    static func sessionArrived(_ ssl: OpaquePointer, _ session: OpaquePointer) {
        guard let engine = DatagramBIO.engine(SSL_get_rbio(ssl)) else { return }
        var bytes: UnsafeMutablePointer<UInt8>?
        var length = 0
        guard SSL_SESSION_to_bytes(session, &bytes, &length) == 1, let bytes else { return }
        defer { OPENSSL_free(bytes) }
        engine.newSessions.append(DTLS13Session(bytes: Array(UnsafeBufferPointer(start: bytes, count: length)),
                                                lifetimeSeconds: Int(SSL_SESSION_get_timeout(session))))
    }

    deinit {
        BIO_set_data(bio, nil)
        SSL_free(ssl)  // frees both references to the BIO
    }

    // MARK: Datagrams

    /// Starts the handshake (the client's first flight); a server waits for the ClientHello.
    public func start() { advance() }

    /// One datagram from the peer.
    public func receive(_ datagram: [UInt8]) {
        guard state == .handshaking || state == .established else { return }
        incoming.append(datagram)
        advance()
    }

    /// The datagrams to send now, each whole.
    public func takeOutgoing() -> [[UInt8]] {
        defer { outgoing.removeAll() }
        return outgoing
    }

    /// Plaintext records that arrived, in order.
    public func takePlaintext() -> [[UInt8]] {
        defer { plaintext.removeAll() }
        return plaintext
    }

    /// Milliseconds until a timer needs `handleTimeout()` (retransmission, or a delayed ACK); nil
    /// when none runs.
    public var timeoutMilliseconds: UInt64? {
        var remaining = timeval()
        guard DTLSv1_get_timeout(ssl, &remaining) == 1 else { return nil }
        return UInt64(remaining.tv_sec) * 1_000 + UInt64(remaining.tv_usec) / 1_000
    }

    /// Services an expired timer: retransmits a flight, or sends a delayed ACK.
    public func handleTimeout() {
        guard state == .handshaking || state == .established else { return }
        if DTLSv1_handle_timeout(ssl) < 0 { fail(kind: .handshakeFailed, "DTLS timer") }
        advance()
    }

    // MARK: Application data

    /// Encrypts `bytes` as one record (at most 2^14 bytes) into the outgoing datagrams.
    public func send(_ bytes: [UInt8]) throws(DTLS13Error) {
        guard state == .established else { throw DTLS13Error(kind: .protocolViolation, message: "the DTLS handshake has not finished") }
        let written = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        guard written == Int32(bytes.count) else {
            let error = takeError(default: "SSL_write failed")
            fail(kind: .protocolViolation, error)
            throw DTLS13Error(kind: .protocolViolation, message: error)
        }
    }

    /// Sends close_notify.
    public func close() {
        guard state == .established else { return }
        _ = SSL_shutdown(ssl)
        state = .closed
    }

    // MARK: After the handshake

    /// RFC 5705 / RFC 8446 section 7.5 keying material; nil before the handshake finished.
    public func exportKeyingMaterial(label: String, context exportContext: [UInt8]?, length: Int) -> [UInt8]? {
        guard state == .established else { return nil }
        var output = [UInt8](repeating: 0, count: length)
        let labelBytes = Array(label.utf8)
        let status = output.withUnsafeMutableBufferPointer { out in
            labelBytes.withUnsafeBufferPointer { labelPointer in
                (exportContext ?? []).withUnsafeBufferPointer { contextPointer in
                    labelPointer.withMemoryRebound(to: CChar.self) { label in
                        SSL_export_keying_material(ssl, out.baseAddress, out.count, label.baseAddress, label.count,
                                                                 contextPointer.baseAddress, contextPointer.count, exportContext == nil ? 0 : 1)
                    }
                }
            }
        }
        return status == 1 ? output : nil
    }

    /// The negotiated protocol version (0xfefc for DTLS 1.3).
    public var version: UInt16 { UInt16(truncatingIfNeeded: SSL_version(ssl)) }

    /// The negotiated cipher suite's IANA value, e.g. 0x1301.
    public var cipherSuite: UInt16? {
        guard let cipher = SSL_get_current_cipher(ssl) else { return nil }
        return SSL_CIPHER_get_protocol_id(cipher)
    }

    /// The key-exchange group's name, e.g. "X25519MLKEM768".
    public var group: String? {
        let id = SSL_get_group_id(ssl)
        guard id != 0, let name = SSL_get_group_name(id) else { return nil }
        return String(cString: name)
    }

    /// The peer's certificates as it sent them, leaf first, DER encoded.
    public var peerCertificateChainDER: [[UInt8]] {
        guard let chain = SSL_get0_peer_certificates(ssl) else { return [] }
        return (0..<sk_CRYPTO_BUFFER_num(chain)).compactMap { index in
            sk_CRYPTO_BUFFER_value(chain, index).map { Array(UnsafeBufferPointer(start: CRYPTO_BUFFER_data($0), count: CRYPTO_BUFFER_len($0))) }
        }
    }

    /// Why the peer's chain failed validation against the trusted roots, or nil when it passed
    /// (meaningful once established; with `defersTrustDecision` a failure does not end the handshake).
    public var peerValidationError: String? {
        let result = SSL_get_verify_result(ssl)
        return result == X509_V_OK ? nil : String(cString: X509_verify_cert_error_string(Int(result)))
    }

    /// The peer's leaf certificate, DER encoded.
    public var peerCertificateDER: [UInt8]? {
        guard let certificate = SSL_get_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        var buffer: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509(certificate, &buffer)
        guard length > 0, let buffer else { return nil }
        defer { OPENSSL_free(buffer) }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(length)))
    }

    // MARK: Driving BoringSSL

    private func advance() {
        if state == .handshaking {
            let result = SSL_do_handshake(ssl)
            if result == 1 {
                state = .established
            } else {
                let error = SSL_get_error(ssl, result)
                guard error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE else {
                    let verify = SSL_get_verify_result(ssl)
                    if verify != X509_V_OK {
                        fail(kind: .certificateRejected, String(cString: X509_verify_cert_error_string(verify)))
                    } else {
                        fail(kind: .handshakeFailed, takeError(default: "the DTLS 1.3 handshake failed"))
                    }
                    return
                }
            }
        }
        guard state == .established else { return }
        readRecords()
    }

    private func readRecords() {
        var buffer = [UInt8](repeating: 0, count: 16_384 + 256)
        while true {
            let count = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if count > 0 {
                plaintext.append(Array(buffer[..<Int(count)]))
                continue
            }
            let error = SSL_get_error(ssl, count)
            if error == SSL_ERROR_ZERO_RETURN { state = .closed }
            else if error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE {
                fail(kind: .protocolViolation, takeError(default: "DTLS record error"))
            }
            return
        }
    }

    private func fail(kind: DTLS13Error.Kind, _ message: String) {
        if case .failed = state { return }
        state = .failed(DTLS13Error(kind: kind, message: message))
    }

    private func takeError(default message: String) -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return message }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A resumable DTLS 1.3 session, serialized: what a client keeps to resume with later.
public struct DTLS13Session: Sendable, Equatable {
    public let bytes: [UInt8]
    /// How long the server said the session may be resumed.
    public let lifetimeSeconds: Int

    public init(bytes: [UInt8], lifetimeSeconds: Int) {
        self.bytes = bytes
        self.lifetimeSeconds = lifetimeSeconds
    }
}

/// A BIO that keeps datagrams whole: each write is one outgoing datagram, each read returns one
/// incoming datagram (or as much of it as fits, the rest dropped, as a datagram socket would).
private enum DatagramBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "taps datagram")!
        BIO_meth_set_write(method) { bio, data, length in
            guard let engine = DatagramBIO.engine(bio), let data, length >= 0 else { return -1 }
            engine.outgoing.append(Array(UnsafeRawBufferPointer(start: data, count: Int(length))))
            return length
        }
        BIO_meth_set_read(method) { bio, data, length in
            guard let bio, let engine = DatagramBIO.engine(bio), let data else { return -1 }
            BIO_clear_retry_flags(bio)
            guard !engine.incoming.isEmpty else {
                BIO_set_retry_read(bio)
                return -1
            }
            let datagram = engine.incoming.removeFirst()
            let count = min(Int(length), datagram.count)
            datagram.withUnsafeBytes { UnsafeMutableRawPointer(data).copyMemory(from: $0.baseAddress!, byteCount: count) }
            return Int32(count)
        }
        BIO_meth_set_ctrl(method) { bio, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_DGRAM_QUERY_MTU, BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
                return bio.flatMap(DatagramBIO.engine).map { Int($0.maximumDatagram) } ?? 0
            case BIO_CTRL_WPENDING, BIO_CTRL_PENDING: return 0
            default: return 0
            }
        }
        return method
    }()

    static func engine(_ bio: OpaquePointer?) -> DTLS13Engine? {
        guard let bio, let data = BIO_get_data(bio) else { return nil }
        return Unmanaged<DTLS13Engine>.fromOpaque(data).takeUnretainedValue()
    }
}
