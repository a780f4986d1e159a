internal import COpenSSL

/// One direction's TLS 1.3 record protection (RFC 8446 section 5.2) for sealing or for opening:
/// the record keys of an application traffic secret (section 7.3) in a `RecordCipher` (BoringSSL's
/// AEAD, the nonce of section 5.3), the implicit record number, and KeyUpdate (section 7.2). A
/// tls-sctp engine seals and opens its application records with these once the handshake is done,
/// instead of OpenSSL 3.0, whose AES-GCM has no VAES code and which copies each record through its
/// own buffer; two more follow the keys OpenSSL writes and reads its own records (alerts, tickets,
/// KeyUpdates) under, so that those are sealed again in sequence.
final class TLS13RecordProtection {
    static let applicationData: UInt8 = 23
    static let handshake: UInt8 = 22
    static let alert: UInt8 = 21
    static let headerLength = 5
    /// The largest record a peer may send (section 5.2): 2^14 + 256 bytes after the header.
    static let largestRecord = headerLength + (1 << 14) + 256
    /// Content type byte and AEAD tag: what a record adds to its content besides the header.
    static let overhead = 1 + DTLSChunkCipherSuite.tagLength
    /// Records per key before this end updates its keys, below AES-GCM's limit of 2^24.5 full-size
    /// records (RFC 8446 section 5.5).
    static let recordsPerKey: UInt64 = 1 << 24

    let suite: DTLSChunkCipherSuite
    private let sealing: Bool
    private var secret: [UInt8]
    private var cipher: RecordCipher
    /// The next record's sequence number (section 5.3).
    private(set) var sequence: UInt64

    /// Keys from `secret` (an application traffic secret), the next record numbered `sequence`.
    init(suite: DTLSChunkCipherSuite, secret: [UInt8], sequence: UInt64 = 0, sealing: Bool) throws(TransportError) {
        self.suite = suite
        self.sealing = sealing
        self.secret = secret
        self.sequence = sequence
        cipher = try RecordCipher(suite: suite, keys: DTLSChunkKeyMaterial.deriveTLS13(fromTrafficSecret: secret, suite: suite), sealing: sealing)
    }

    deinit {
        OPENSSL_cleanse(&secret, secret.count)
    }

    /// KeyUpdate (section 7.2): the next traffic secret, its keys, and sequence numbers from 0.
    func update() throws(TransportError) {
        var next = try HKDFExpandLabel(digest: suite.digestName, prefix: "tls13 ").expand(secret: secret, label: "traffic upd", length: suite.hashLength)
        cipher = try RecordCipher(suite: suite, keys: DTLSChunkKeyMaterial.deriveTLS13(fromTrafficSecret: next, suite: suite), sealing: sealing)
        OPENSSL_cleanse(&secret, secret.count)
        secret = next
        OPENSSL_cleanse(&next, next.count)
        sequence = 0
    }

    /// One record: `content` of the given type (at most 2^14 bytes), sealed under the next
    /// sequence number.
    func seal(_ content: UnsafeRawBufferPointer, type: UInt8) throws(TransportError) -> [UInt8] {
        let length = content.count + Self.overhead
        guard sequence < .max else { throw .invalidArgument("TLS record sequence numbers are exhausted") }
        var sealed = false
        let record = [UInt8](unsafeUninitializedCapacity: Self.headerLength + length) { buffer, initialized in
            let base = buffer.baseAddress!
            // opaque_type application_data, legacy_record_version 0x0303, length (section 5.2).
            base[0] = Self.applicationData
            base[1] = 3
            base[2] = 3
            base[3] = UInt8(length >> 8)
            base[4] = UInt8(length & 0xFF)
            let header = UnsafeRawBufferPointer(start: base, count: Self.headerLength)
            sealed = withUnsafeBytes(of: type) { trailer in
                cipher.seal(sequence: sequence, header: header, plaintext: content, trailer: trailer, into: base + Self.headerLength)
            }
            initialized = sealed ? buffer.count : 0
        }
        guard sealed else { throw .invalidArgument("sealing a TLS record failed") }
        sequence += 1
        return record
    }

    /// Opens one whole record (header included) sealed under these keys at the next sequence
    /// number: its content and type, the padding removed. Nil when it does not authenticate.
    func open(_ record: UnsafeRawBufferPointer) -> (content: [UInt8], type: UInt8)? {
        guard record.count >= Self.headerLength + Self.overhead else { return nil }
        var type: UInt8 = 0
        var inner = [UInt8](repeating: 0, count: record.count - Self.headerLength - DTLSChunkCipherSuite.tagLength)
        let length = inner.withUnsafeMutableBytes { output in
            open(record, into: output.baseAddress!).map { opened in
                type = opened.type
                return opened.count
            }
        }
        guard let length else { return nil }
        return (Array(inner[..<length]), type)
    }

    /// Opens one whole record into `output` (room for the record less header and tag): how long
    /// its content is there, and its type. Nil when it does not authenticate or carries no type.
    func open(_ record: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> (count: Int, type: UInt8)? {
        guard record.count >= Self.headerLength + Self.overhead, record[0] == Self.applicationData,
              Int(record[3]) << 8 | Int(record[4]) == record.count - Self.headerLength else { return nil }
        let header = UnsafeRawBufferPointer(rebasing: record[..<Self.headerLength])
        let ciphertext = UnsafeRawBufferPointer(rebasing: record[Self.headerLength...])
        guard cipher.open(sequence: sequence, header: header, ciphertext: ciphertext, into: output) else { return nil }
        sequence += 1
        // TLSInnerPlaintext: content, type, zero padding (section 5.2).
        let inner = UnsafeRawBufferPointer(start: output, count: ciphertext.count - DTLSChunkCipherSuite.tagLength)
        guard let typeIndex = inner.lastIndex(where: { $0 != 0 }) else { return nil }
        return (typeIndex, inner[typeIndex])
    }
}
