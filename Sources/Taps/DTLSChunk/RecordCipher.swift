internal import COpenSSL
import Glibc

/// One direction's record protection for one DTLS key context: the AEAD (RFC 8446 section 5.2,
/// nonce per section 5.3) and the record-number mask (RFC 9147 section 4.2.3). Both OpenSSL cipher
/// contexts are keyed once, when the keys are installed; a record only sets its nonce.
final class RecordCipher {
    let suite: DTLSChunkCipherSuite
    private let aead: OpaquePointer
    private let mask: OpaquePointer
    private var iv: [UInt8]
    private let sealing: Bool

    init(suite: DTLSChunkCipherSuite, keys: DTLSChunkKeyMaterial, sealing: Bool) throws(TransportError) {
        try keys.validate(for: suite)
        guard let aead = EVP_CIPHER_CTX_new(), let mask = EVP_CIPHER_CTX_new() else {
            throw .io("EVP_CIPHER_CTX_new failed")
        }
        self.suite = suite
        self.aead = aead
        self.mask = mask
        self.iv = keys.iv
        self.sealing = sealing
        let keyed = keys.key.withUnsafeBufferPointer { key in
            EVP_CipherInit_ex(aead, suite.aead, nil, key.baseAddress, nil, sealing ? 1 : 0)
        } == 1 && keys.sequenceNumberKey.withUnsafeBufferPointer { key in
            // The mask is always an encryption (of the ciphertext sample), in either direction.
            EVP_EncryptInit_ex(mask, suite.maskCipher, nil, key.baseAddress, nil)
        } == 1
        guard keyed else { throw .invalidArgument("OpenSSL refused the \(suite) keys") }
        EVP_CIPHER_CTX_set_padding(mask, 0)
    }

    deinit {
        EVP_CIPHER_CTX_free(aead)
        EVP_CIPHER_CTX_free(mask)
    }

    // The tag goes through the provider's parameters directly: EVP_CIPHER_CTX_ctrl would build the
    // same parameter and look it up by name on every record. OSSL_PARAM keeps the pointer to its
    // name, so the name lives in a C string of its own.
    nonisolated(unsafe) private static let tagName = strdup(OSSL_CIPHER_PARAM_AEAD_TAG)!

    private func exchangeTag(_ tag: UnsafeMutableRawPointer, set: Bool) -> Bool {
        withUnsafeTemporaryAllocation(of: OSSL_PARAM.self, capacity: 2) { params in
            params[0] = OSSL_PARAM_construct_octet_string(Self.tagName, tag, DTLSChunkCipherSuite.tagLength)
            params[1] = OSSL_PARAM_construct_end()
            return set ? EVP_CIPHER_CTX_set_params(aead, params.baseAddress) == 1 : EVP_CIPHER_CTX_get_params(aead, params.baseAddress) == 1
        }
    }

    /// The nonce: the 64-bit record sequence number, left-padded to the IV's length, XOR the IV
    /// (RFC 8446 section 5.3; DTLS 1.3 leaves the epoch out of it, RFC 9147 section 4).
    private func withNonce<R>(_ sequence: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: iv.count) { nonce in
            for index in 0..<iv.count {
                let shift = iv.count - 1 - index
                let sequenceByte: UInt8 = shift < 8 ? UInt8(truncatingIfNeeded: sequence >> (8 * shift)) : 0
                nonce[index] = iv[index] ^ sequenceByte
            }
            return body(UnsafePointer(nonce.baseAddress!))
        }
    }

    /// Encrypts `plaintext` followed by `trailer` (DTLSInnerPlaintext: the content, then its type) into
    /// `output` (plaintext.count + trailer.count + 16 bytes: ciphertext, then the tag), authenticating
    /// `header`. `output` may be `plaintext`'s own memory; reading the content where it lies saves a copy.
    func seal(sequence: UInt64, header: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
              trailer: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), into output: UnsafeMutableRawPointer) -> Bool {
        precondition(sealing)
        return withNonce(sequence) { nonce in
            var length: Int32 = 0
            guard EVP_CipherInit_ex(aead, nil, nil, nil, nonce, -1) == 1,
                  EVP_CipherUpdate(aead, nil, &length, header.baseAddress, Int32(header.count)) == 1,
                  EVP_CipherUpdate(aead, output, &length, plaintext.baseAddress, Int32(plaintext.count)) == 1
            else { return false }
            var written = Int(length)
            if trailer.count > 0 {
                guard EVP_CipherUpdate(aead, output + written, &length, trailer.baseAddress, Int32(trailer.count)) == 1 else { return false }
                written += Int(length)
            }
            guard EVP_CipherFinal_ex(aead, output + written, &length) == 1 else { return false }
            return exchangeTag(output + plaintext.count + trailer.count, set: false)
        }
    }

    /// Decrypts and authenticates `ciphertext` (ending in its tag) into `output`
    /// (ciphertext.count - 16 bytes). False when the record does not authenticate.
    func open(sequence: UInt64, header: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> Bool {
        precondition(!sealing)
        let tagLength = DTLSChunkCipherSuite.tagLength
        guard ciphertext.count >= tagLength else { return false }
        let bodyLength = ciphertext.count - tagLength
        return withNonce(sequence) { nonce in
            var length: Int32 = 0
            return EVP_CipherInit_ex(aead, nil, nil, nil, nonce, -1) == 1
                && exchangeTag(UnsafeMutableRawPointer(mutating: ciphertext.baseAddress! + bodyLength), set: true)
                && EVP_CipherUpdate(aead, nil, &length, header.baseAddress, Int32(header.count)) == 1
                && EVP_CipherUpdate(aead, output, &length, ciphertext.baseAddress, Int32(bodyLength)) == 1
                && EVP_CipherFinal_ex(aead, output + Int(length), &length) == 1
        }
    }

    /// The mask for the record number, from the first 16 bytes of the encrypted record (RFC 9147
    /// section 4.2.3); its first bytes are XORed onto the sequence number on the wire.
    func sequenceMask(sample: UnsafeRawPointer) -> (UInt8, UInt8) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { block in
            var length: Int32 = 0
            let base = block.baseAddress!
            if suite == .chacha20Poly1305SHA256 {
                // ChaCha20 with the sample's first 4 bytes as block counter and the next 12 as nonce:
                // exactly OpenSSL's 16-byte ChaCha20 IV. The mask is the keystream (zeros encrypted).
                for index in 0..<16 { base[index + 16] = 0 }
                _ = EVP_EncryptInit_ex(mask, nil, nil, nil, sample.assumingMemoryBound(to: UInt8.self))
                _ = EVP_EncryptUpdate(mask, base, &length, base + 16, 16)
            } else {
                _ = EVP_EncryptUpdate(mask, base, &length, sample.assumingMemoryBound(to: UInt8.self), 16)
            }
            return (base[0], base[1])
        }
    }
}
