import TapsDTLS13

/// One direction's record protection for one DTLS key context: the AEAD (RFC 8446 section 5.2,
/// nonce per section 5.3) and the record-number mask (RFC 9147 section 4.2.3), on BoringSSL's
/// `EVP_AEAD` (`RecordAEAD`), keyed once when the keys are installed; a record only makes its nonce.
final class RecordCipher {
    let suite: DTLSChunkCipherSuite
    private let aead: RecordAEAD
    private let iv: [UInt8]
    private let sealing: Bool

    init(suite: DTLSChunkCipherSuite, keys: DTLSChunkKeyMaterial, sealing: Bool) throws(TransportError) {
        try keys.validate(for: suite)
        guard let aead = RecordAEAD(algorithm: suite.recordAlgorithm, key: keys.key, sequenceNumberKey: keys.sequenceNumberKey) else {
            throw .invalidArgument("BoringSSL refused the \(suite) keys")
        }
        self.suite = suite
        self.aead = aead
        self.iv = keys.iv
        self.sealing = sealing
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
            aead.seal(nonce: nonce, additionalData: header, plaintext: plaintext, trailer: trailer, into: output)
        }
    }

    /// Decrypts and authenticates `ciphertext` (ending in its tag) into `output`
    /// (ciphertext.count - 16 bytes). False when the record does not authenticate.
    func open(sequence: UInt64, header: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> Bool {
        precondition(!sealing)
        return withNonce(sequence) { nonce in
            aead.open(nonce: nonce, additionalData: header, ciphertext: ciphertext, into: output)
        }
    }

    /// The mask for the record number, from the first 16 bytes of the encrypted record (RFC 9147
    /// section 4.2.3); its first bytes are XORed onto the sequence number on the wire.
    func sequenceMask(sample: UnsafeRawPointer) -> (UInt8, UInt8) {
        aead.sequenceMask(sample: sample)
    }
}
