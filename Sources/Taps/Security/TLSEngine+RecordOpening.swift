internal import COpenSSL

/// tls-sctp: the peer's TLS 1.3 records opened by a `TLS13RecordProtection` (BoringSSL's AES-GCM,
/// straight from the message that arrived into the array handed to the application) instead of
/// OpenSSL 3.0, which copies each record into its buffer, opens it at a third of that speed and
/// copies the plaintext out again. From the moment the handshake completes every record is opened
/// here: application data goes up, and what OpenSSL must see (tickets, KeyUpdate, alerts) is sealed
/// again under the keys OpenSSL reads with, in OpenSSL's own record numbering, and fed to it. A
/// KeyUpdate moves both key schedules on once OpenSSL has read it (RFC 8446 sections 4.6.3, 7.2).
extension TLSEngine {
    /// The handshake is done and nothing has arrived since: the reader takes over with the first
    /// record (or the end of the stream), so a stream that never reads derives no keys for it.
    var readerAwaitsFirstRecord: Bool {
        sealsApplicationRecords && !openingDeclined && recordReader == nil && buffers.inbound.isEmpty && !buffers.inboundEnded
    }

    /// The reader, keyed from the peer's application traffic secret once the handshake has
    /// completed, while OpenSSL has read nothing under it; nil while OpenSSL opens the records.
    func recordReaderTakingOver() -> TLS13RecordProtection? {
        if let recordReader { return recordReader }
        guard sealsApplicationRecords, !openingDeclined, handshakeComplete else { return nil }
        openingDeclined = true  // decided once
        defer {
            if var secret = peerApplicationSecret { OPENSSL_cleanse(&secret, secret.count) }
            peerApplicationSecret = nil
        }
        guard let suite = applicationRecordSuite, let secret = peerApplicationSecret,
              let reader = try? TLS13RecordProtection(suite: suite, secret: secret, sealing: false),
              let openSSLKeys = try? TLS13RecordProtection(suite: suite, secret: secret, sealing: true)
        else { return nil }
        recordReader = reader
        openSSLReadKeys = openSSLKeys
        return reader
    }

    /// Opens every whole record that arrived; the start of a record waits for its end. Application
    /// data goes to `deliver` in one array per run of records, the rest to OpenSSL in between.
    func openRecords(with reader: TLS13RecordProtection, deliver: ([UInt8]) -> Void) -> ReadOutcome {
        let arrived = buffers.inbound
        buffers.inbound = UnsafeRawBufferPointer(start: nil, count: 0)
        guard partialInboundRecord.isEmpty else {
            var joined = partialInboundRecord
            joined.append(contentsOf: arrived)
            partialInboundRecord = []
            return joined.withUnsafeBytes { openWholeRecords($0, with: reader, deliver: deliver) }
        }
        return openWholeRecords(arrived, with: reader, deliver: deliver)
    }

    private func openWholeRecords(_ input: UnsafeRawBufferPointer, with reader: TLS13RecordProtection,
                                  deliver: ([UInt8]) -> Void) -> ReadOutcome {
        var offset = 0
        while true {
            // A run of application records, opened straight into one array of at most their size.
            var stop: RecordRunEnd = .incomplete
            let plaintext = [UInt8](unsafeUninitializedCapacity: max(1, input.count - offset)) { buffer, filled in
                filled = 0
                while let length = EngineBIO.Buffers.recordLength(input, at: offset) {
                    guard input[offset] == TLS13RecordProtection.applicationData, length <= TLS13RecordProtection.largestRecord,
                          length >= TLS13RecordProtection.headerLength + TLS13RecordProtection.overhead else {
                        stop = .malformed(type: input[offset], length: length)
                        return
                    }
                    guard input.count - offset >= length else { return }
                    let record = UnsafeRawBufferPointer(rebasing: input[offset..<(offset + length)])
                    guard let opened = reader.open(record, into: buffer.baseAddress! + filled) else {
                        stop = .unauthentic
                        return
                    }
                    offset += length
                    if opened.type != TLS13RecordProtection.applicationData {
                        stop = .forOpenSSL(Array(buffer[filled..<(filled + opened.count)]), type: opened.type)
                        return
                    }
                    filled += opened.count
                }
            }
            if !plaintext.isEmpty { deliver(plaintext) }
            switch stop {
            case .incomplete:
                partialInboundRecord = Array(input[offset...])
                if buffers.inboundEnded {
                    return .failed(.truncated("the peer closed the connection without a TLS close_notify; data may be missing"))
                }
                return .ok
            case .malformed(let type, let length):
                return .failed(.protocolViolation("the peer sent a TLS record that is not a TLS 1.3 protected record (type \(type), \(length) bytes)"))
            case .unauthentic:
                return .failed(.protocolViolation("a TLS record from the peer did not authenticate (bad_record_mac)"))
            case .forOpenSSL(let content, let type):
                if let outcome = handToOpenSSL(content, type: type) { return outcome }
            }
        }
    }

    /// Why a run of application records ended.
    private enum RecordRunEnd {
        case incomplete
        case malformed(type: UInt8, length: Int)
        case unauthentic
        case forOpenSSL([UInt8], type: UInt8)
    }

    /// Seals a record's content again under OpenSSL's read keys and lets OpenSSL read it; nil to go
    /// on reading, else the outcome (the peer's close_notify, an alert, a failure).
    private func handToOpenSSL(_ content: [UInt8], type: UInt8) -> ReadOutcome? {
        guard type == TLS13RecordProtection.handshake || type == TLS13RecordProtection.alert, let openSSLKeys = openSSLReadKeys,
              let resealed = try? content.withUnsafeBytes({ content throws(TransportError) in try openSSLKeys.seal(content, type: type) })
        else { return .failed(.protocolViolation("the peer sent a TLS record of content type \(type) after the handshake")) }
        let outcome: ReadOutcome = resealed.withUnsafeBytes { record in
            buffers.inbound = record
            defer { buffers.inbound = UnsafeRawBufferPointer(start: nil, count: 0) }
            var byte: UInt8 = 0
            var count = 0
            if SSL_read_ex(ssl, &byte, 1, &count) == 1 {
                return .failed(.protocolViolation("OpenSSL read application data from a record of content type \(type)"))
            }
            switch SSL_get_error(ssl, 0) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .ok
            case SSL_ERROR_ZERO_RETURN:
                receivedCloseNotify = true
                return .closeNotify
            default: return .failed(classifyFailure(status: 0, during: "TLS record"))
            }
        }
        guard case .ok = outcome else { return outcome }
        if type == TLS13RecordProtection.handshake, Self.containsKeyUpdate(content) {
            // OpenSSL moved to the peer's next keys on reading it; so does the reader.
            do {
                try openSSLKeys.update()
                try recordReader?.update()
            } catch {
                return .failed(error)
            }
        }
        return nil
    }
}
