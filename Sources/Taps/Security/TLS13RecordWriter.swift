internal import COpenSSL
import TapsDTLS13

/// One direction's TLS 1.3 record protection (RFC 8446 section 5.2) on BoringSSL's AEAD
/// (`RecordAEAD`), keyed from an application traffic secret (section 7.3) and advanced by KeyUpdate
/// (section 7.2). A tls-sctp engine seals its application records with it once the handshake is
/// done, instead of OpenSSL 3.0, whose AES-GCM has no VAES code and which copies the plaintext into
/// its own buffer first; the engine also opens what OpenSSL itself writes afterwards (alerts,
/// KeyUpdate) with a second writer that follows OpenSSL's keys, and seals it again in sequence.
final class TLS13RecordWriter {
    /// The TLS 1.3 cipher suites (RFC 8446 appendix B.4) this writer can seal with.
    enum Suite {
        case aes128GCMSHA256, aes256GCMSHA384, chacha20Poly1305SHA256

        /// From the suite's two-byte code point; nil for any other.
        init?(protocolID: UInt16) {
            switch protocolID {
            case 0x1301: self = .aes128GCMSHA256
            case 0x1302: self = .aes256GCMSHA384
            case 0x1303: self = .chacha20Poly1305SHA256
            default: return nil
            }
        }

        var algorithm: RecordAEAD.Algorithm {
            switch self {
            case .aes128GCMSHA256: .aes128GCM
            case .aes256GCMSHA384: .aes256GCM
            case .chacha20Poly1305SHA256: .chacha20Poly1305
            }
        }

        var digest: String { self == .aes256GCMSHA384 ? "SHA384" : "SHA256" }
        var hashLength: Int { self == .aes256GCMSHA384 ? 48 : 32 }
    }

    static let applicationData: UInt8 = 23
    static let handshake: UInt8 = 22
    static let headerLength = 5
    /// Content type byte and AEAD tag: what a record adds to its content besides the header.
    static let overhead = 1 + RecordAEAD.tagLength
    /// Records per key before this end updates its keys, below AES-GCM's limit of 2^24.5 full-size
    /// records (RFC 8446 section 5.5).
    static let recordsPerKey: UInt64 = 1 << 24

    let suite: Suite
    private var secret: [UInt8]
    private var aead: RecordAEAD
    private var iv: [UInt8]
    /// The next record's sequence number (section 5.3).
    private(set) var sequence: UInt64

    private static func expander(_ suite: Suite) -> HKDFExpandLabel { HKDFExpandLabel(digest: suite.digest, prefix: "tls13 ") }

    /// Keys from `secret` (an application traffic secret), the next record numbered `sequence`.
    init(suite: Suite, secret: [UInt8], sequence: UInt64 = 0) throws(TransportError) {
        self.suite = suite
        self.secret = secret
        self.sequence = sequence
        (aead, iv) = try Self.keys(suite, secret)
    }

    deinit {
        OPENSSL_cleanse(&secret, secret.count)
        OPENSSL_cleanse(&iv, iv.count)
    }

    private static func keys(_ suite: Suite, _ secret: [UInt8]) throws(TransportError) -> (RecordAEAD, [UInt8]) {
        let hkdf = expander(suite)
        var key = try hkdf.expand(secret: secret, label: "key", length: suite.algorithm.keyLength)
        defer { OPENSSL_cleanse(&key, key.count) }
        let iv = try hkdf.expand(secret: secret, label: "iv", length: RecordAEAD.nonceLength)
        // TLS has no record-number mask: the key stands in for the mask key RecordAEAD also keeps.
        guard let aead = RecordAEAD(algorithm: suite.algorithm, key: key, sequenceNumberKey: key) else {
            throw .invalidArgument("the \(suite) record key was refused")
        }
        return (aead, iv)
    }

    /// KeyUpdate (section 7.2): the next traffic secret, its keys, and sequence numbers from 0.
    func update() throws(TransportError) {
        var next = try Self.expander(suite).expand(secret: secret, label: "traffic upd", length: suite.hashLength)
        (aead, iv) = try Self.keys(suite, next)
        OPENSSL_cleanse(&secret, secret.count)
        secret = next
        OPENSSL_cleanse(&next, next.count)
        sequence = 0
    }

    /// The per-record nonce (section 5.3): the IV XORed with the sequence number, left-padded.
    private func withNonce<Result>(_ body: (UnsafePointer<UInt8>) -> Result) -> Result {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: RecordAEAD.nonceLength) { nonce in
            for index in 0..<RecordAEAD.nonceLength { nonce[index] = iv[index] }
            for index in 0..<8 { nonce[RecordAEAD.nonceLength - 1 - index] ^= UInt8(truncatingIfNeeded: sequence >> (8 * index)) }
            return body(nonce.baseAddress!)
        }
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
                withNonce { nonce in
                    aead.seal(nonce: nonce, additionalData: header, plaintext: content, trailer: trailer, into: base + Self.headerLength)
                }
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
        guard record.count >= Self.headerLength + Self.overhead, record[0] == Self.applicationData,
              Int(record[3]) << 8 | Int(record[4]) == record.count - Self.headerLength else { return nil }
        let header = UnsafeRawBufferPointer(rebasing: record[..<Self.headerLength])
        let ciphertext = UnsafeRawBufferPointer(rebasing: record[Self.headerLength...])
        var inner = [UInt8](repeating: 0, count: ciphertext.count - RecordAEAD.tagLength)
        let opened = inner.withUnsafeMutableBytes { output in
            withNonce { aead.open(nonce: $0, additionalData: header, ciphertext: ciphertext, into: output.baseAddress!) }
        }
        guard opened else { return nil }
        sequence += 1
        // TLSInnerPlaintext: content, type, zero padding (section 5.2).
        guard let typeIndex = inner.lastIndex(where: { $0 != 0 }) else { return nil }
        return (Array(inner[..<typeIndex]), inner[typeIndex])
    }
}
