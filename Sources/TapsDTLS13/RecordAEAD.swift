@_implementationOnly import CNIOBoringSSL

/// One direction's record protection keys on BoringSSL: the AEAD (`EVP_AEAD`, keyed once, one call
/// per record, no per-record algorithm lookups) and the record-number mask cipher (RFC 9147 section
/// 4.2.3). The DTLS chunk protects every SCTP packet with it; BoringSSL's AES-GCM uses the VAES and
/// AVX-512 instructions the system OpenSSL 3.0 has no code for, about 3x faster per record here.
public final class RecordAEAD {
    /// The TLS 1.3 AEADs a DTLS record may be protected with.
    public enum Algorithm: Sendable {
        case aes128GCM, aes256GCM, chacha20Poly1305

        /// Key length in bytes, of the record key and of the record-number key alike.
        public var keyLength: Int { self == .aes128GCM ? 16 : 32 }
    }

    /// Every algorithm here appends a 16-byte tag and takes a 12-byte nonce.
    public static let tagLength = 16
    public static let nonceLength = 12

    private let context: UnsafeMutablePointer<EVP_AEAD_CTX>
    // The record-number mask's key: an expanded AES key schedule, or the raw ChaCha20 key.
    private let aesMaskKey: UnsafeMutablePointer<AES_KEY>?
    private let chachaMaskKey: [UInt8]

    /// Nil when a key has the wrong length for `algorithm` or BoringSSL refuses it.
    public init?(algorithm: Algorithm, key: [UInt8], sequenceNumberKey: [UInt8]) {
        guard key.count == algorithm.keyLength, sequenceNumberKey.count == algorithm.keyLength else { return nil }
        let aead: OpaquePointer = switch algorithm {
        case .aes128GCM: EVP_aead_aes_128_gcm()
        case .aes256GCM: EVP_aead_aes_256_gcm()
        case .chacha20Poly1305: EVP_aead_chacha20_poly1305()
        }
        guard let context = EVP_AEAD_CTX_new(aead, key, key.count, Self.tagLength) else { return nil }
        self.context = context
        if algorithm == .chacha20Poly1305 {
            aesMaskKey = nil
            chachaMaskKey = sequenceNumberKey
        } else {
            let schedule = UnsafeMutablePointer<AES_KEY>.allocate(capacity: 1)
            guard AES_set_encrypt_key(sequenceNumberKey, UInt32(sequenceNumberKey.count * 8), schedule) == 0 else {
                schedule.deallocate()
                EVP_AEAD_CTX_free(context)
                return nil
            }
            aesMaskKey = schedule
            chachaMaskKey = []
        }
    }

    deinit {
        EVP_AEAD_CTX_free(context)
        aesMaskKey?.deallocate()
    }

    /// Encrypts `plaintext` followed by `trailer` into `output` (plaintext.count + trailer.count + 16
    /// bytes: ciphertext, then the tag), authenticating `additionalData`. `output` may be exactly
    /// `plaintext`'s memory.
    public func seal(nonce: UnsafePointer<UInt8>, additionalData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
                     trailer: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> Bool {
        let ciphertext = output.assumingMemoryBound(to: UInt8.self)
        // The trailer goes in as BoringSSL's "extra input", whose ciphertext lands before the tag.
        var tagWritten = 0
        return EVP_AEAD_CTX_seal_scatter(
            context, ciphertext, ciphertext + plaintext.count, &tagWritten, trailer.count + Self.tagLength,
            nonce, Self.nonceLength, Self.bytes(plaintext), plaintext.count, Self.bytes(trailer), trailer.count,
            Self.bytes(additionalData), additionalData.count) == 1
    }

    /// Decrypts and authenticates `ciphertext` (ending in its tag) into `output`
    /// (ciphertext.count - 16 bytes). False when it does not authenticate.
    public func open(nonce: UnsafePointer<UInt8>, additionalData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
                     into output: UnsafeMutableRawPointer) -> Bool {
        guard ciphertext.count >= Self.tagLength, let input = Self.bytes(ciphertext) else { return false }
        let bodyLength = ciphertext.count - Self.tagLength
        return EVP_AEAD_CTX_open_gather(
            context, output.assumingMemoryBound(to: UInt8.self), nonce, Self.nonceLength, input, bodyLength,
            input + bodyLength, Self.tagLength, Self.bytes(additionalData), additionalData.count) == 1
    }

    /// The record-number mask from a 16-byte ciphertext sample (RFC 9147 section 4.2.3): AES-ECB of
    /// the sample, or the ChaCha20 keystream with the sample's first 4 bytes as the little-endian
    /// block counter and the next 12 as the nonce. Its first two bytes are all a record uses.
    public func sequenceMask(sample: UnsafeRawPointer) -> (UInt8, UInt8) {
        let bytes = sample.assumingMemoryBound(to: UInt8.self)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { block in
            let base = block.baseAddress!
            if let aesMaskKey {
                AES_encrypt(bytes, base, aesMaskKey)
            } else {
                let counter = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
                for index in 0..<16 { base[index] = 0 }
                CRYPTO_chacha_20(base, base, 16, chachaMaskKey, bytes + 4, counter)
            }
            return (base[0], base[1])
        }
    }

    private static func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}
