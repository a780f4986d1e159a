internal import COpenSSL
import Glibc

/// tls-sctp: TLS 1.3 application records sealed by `TLS13RecordProtection` (BoringSSL's AES-GCM, one
/// pass from the application's bytes into the record that goes to SCTP) instead of OpenSSL 3.0,
/// which seals at a third of that speed here and copies the plaintext first (Docs/Benchmarks.md).
/// OpenSSL still runs the handshake and writes what it writes on its own after the handshake
/// (alerts, KeyUpdate): each such record is opened with the keys OpenSSL used and sealed again by
/// the writer, so the peer sees one sequence of records under one key schedule (RFC 8446 sections
/// 5.3 and 7.2). Reading is the mirror image (TLSEngine+RecordOpening).
///
/// The writer takes over at the connection's first write, keyed from this end's application
/// traffic secret (OpenSSL's key log) and numbered after the records OpenSSL already sealed under
/// it (a server's NewSessionTickets). Where that cannot be known exactly (a KeyUpdate before the
/// first write, a suite the writer lacks) OpenSSL keeps sealing.
extension TLSEngine {
    static let newSessionTicket: UInt8 = 4
    static let keyUpdate: UInt8 = 24

    /// Counts the NewSessionTickets OpenSSL writes under the server's application keys during the
    /// handshake (it writes them before the handshake reports complete): each is a record of its
    /// own. The callback goes when the handshake completes, so it never runs per record.
    func countRecordsOpenSSLSeals() {
        SSL_set_msg_callback(ssl) { writing, _, contentType, message, length, ssl, _ in
            guard writing == 1, contentType == SSL3_RT_HANDSHAKE, length > 0, let message,
                  message.load(as: UInt8.self) == TLSEngine.newSessionTicket, let engine = TLSEngine.from(ssl) else { return }
            engine.recordsOpenSSLSealed += 1
        }
    }

    /// One line of OpenSSL's key log (NSS format: label, client random, secret in hex): keeps this
    /// end's and the peer's first application traffic secrets.
    func noteKeyLogLine(_ line: UnsafePointer<CChar>) {
        guard sealsApplicationRecords, let space = strrchr(line, 0x20) else { return }
        let client = "CLIENT_TRAFFIC_SECRET_0 ", server = "SERVER_TRAFFIC_SECRET_0 "
        let (ours, peers) = context.role == .client ? (client, server) : (server, client)
        // The hex digits where they lie: no String holds the secret.
        let secret = {
            let digits = UnsafeRawPointer(space + 1).assumingMemoryBound(to: UInt8.self)
            return Hex.decode(utf8: UnsafeBufferPointer(start: digits, count: strlen(space + 1)))
        }
        if applicationWriteSecret == nil, strncmp(line, ours, ours.utf8.count) == 0 { applicationWriteSecret = secret() }
        if peerApplicationSecret == nil, strncmp(line, peers, peers.utf8.count) == 0 { peerApplicationSecret = secret() }
    }

    /// The writer, taking over on the first write after the handshake if it can; nil while OpenSSL seals.
    func recordWriterTakingOver() -> TLS13RecordProtection? {
        if let recordWriter { return recordWriter }
        guard sealsApplicationRecords, !sealingDeclined, handshakeComplete else { return nil }
        // Whatever the outcome, it is decided once.
        sealingDeclined = true
        defer {
            if var secret = applicationWriteSecret { OPENSSL_cleanse(&secret, secret.count) }
            applicationWriteSecret = nil
        }
        guard SSL_get_key_update_type(ssl) == SSL_KEY_UPDATE_NONE, let suite = applicationRecordSuite,
              let secret = applicationWriteSecret,
              let writer = try? TLS13RecordProtection(suite: suite, secret: secret, sequence: recordsOpenSSLSealed, sealing: true),
              let openSSLKeys = try? TLS13RecordProtection(suite: suite, secret: secret, sequence: recordsOpenSSLSealed, sealing: false)
        else { return nil }
        recordWriter = writer
        openSSLRecordKeys = openSSLKeys
        buffers.reseal = { [unowned self] record in self.resealOpenSSLRecord(record) }
        return writer
    }

    /// The suite `TLS13RecordProtection` protects this connection's records with, while it can know
    /// their numbering: TLS 1.3, a suite it has, no KeyUpdate from the peer yet.
    var applicationRecordSuite: DTLSChunkCipherSuite? {
        guard negotiatedTLS13, peerKeyUpdates == 0, let cipher = SSL_get_current_cipher(ssl) else { return nil }
        return DTLSChunkCipherSuite(rawValue: SSL_CIPHER_get_protocol_id(cipher))
    }

    /// Seals `bytes` as application records of at most `recordContentLimit` each.
    func sealRecords(_ bytes: UnsafeRawBufferPointer, with writer: TLS13RecordProtection) -> TransportError? {
        // A KeyUpdate the peer asked for goes out before more application data (RFC 8446 section
        // 4.6.3). OpenSSL sends it from SSL_write, which is not called any more, so it is asked for
        // here; OpenSSL writes it, and the reseal puts it in sequence.
        if SSL_get_key_update_type(ssl) != SSL_KEY_UPDATE_NONE {
            if SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1 { ERR_clear_error() }
        }
        if let failure = resealFailure { return failure }
        var offset = 0
        do {
            while offset < bytes.count {
                let count = min(recordContentLimit, bytes.count - offset)
                let content = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
                buffers.outboundUnits.append(try writer.seal(content, type: TLS13RecordProtection.applicationData))
                offset += count
            }
        } catch {
            return error
        }
        if writer.sequence >= TLS13RecordProtection.recordsPerKey { try? updateKeys(requestPeer: false) }
        return resealFailure
    }

    /// A record OpenSSL wrote after the takeover, opened with OpenSSL's keys and sealed with the
    /// writer's; a KeyUpdate in it advances both after it. Nil if it does not open.
    private func resealOpenSSLRecord(_ record: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let writer = recordWriter, let openSSLKeys = openSSLRecordKeys, let (content, type) = openSSLKeys.open(record) else { return nil }
        do {
            let sealed = try content.withUnsafeBytes { content throws(TransportError) in try writer.seal(content, type: type) }
            if type == TLS13RecordProtection.handshake, Self.containsKeyUpdate(content) {
                try openSSLKeys.update()
                try writer.update()
            }
            return sealed
        } catch {
            return nil
        }
    }

    /// Walks the handshake messages (type, 24-bit length, body) in one record's content.
    static func containsKeyUpdate(_ content: [UInt8]) -> Bool {
        var offset = 0
        while offset + 4 <= content.count {
            if content[offset] == keyUpdate { return true }
            offset += 4 + (Int(content[offset + 1]) << 16 | Int(content[offset + 2]) << 8 | Int(content[offset + 3]))
        }
        return false
    }

    /// A record OpenSSL wrote could not be sealed again: the connection cannot go on.
    var resealFailure: TransportError? {
        buffers.resealFailed ? .protocolViolation("a TLS record OpenSSL wrote did not open under the keys it should have used") : nil
    }
}
