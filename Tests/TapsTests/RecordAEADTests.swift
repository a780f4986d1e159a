import COpenSSL
import Taps
import TapsDTLS13
import XCTest

/// The DTLS chunk's record protection runs on BoringSSL; these check it against independent answers:
/// the record-number masks against RFC 9001's published header-protection examples (RFC 9147 section
/// 4.2.3 defines DTLS 1.3's mask as QUIC's), and sealed records against the system OpenSSL's AEADs.
final class RecordAEADTests: XCTestCase {
    private func hex(_ text: String) throws -> [UInt8] { try XCTUnwrap(Hex.decode(text), text) }

    func testAESMaskIsRFC9001AppendixA2() throws {
        let aead = try XCTUnwrap(RecordAEAD(algorithm: .aes128GCM, key: [UInt8](repeating: 0, count: 16),
                                            sequenceNumberKey: hex("9f50449e04a0e810283a1e9933adedd2")))
        let sample = try hex("d1b1c98dd7689fb8ec11d242b123dc9b")
        let mask = sample.withUnsafeBytes { aead.sequenceMask(sample: $0.baseAddress!) }
        XCTAssertEqual([mask.0, mask.1], [0x43, 0x7b])
    }

    func testChaCha20MaskIsRFC9001AppendixA5() throws {
        let aead = try XCTUnwrap(RecordAEAD(algorithm: .chacha20Poly1305, key: [UInt8](repeating: 0, count: 32),
                                            sequenceNumberKey: hex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4")))
        let sample = try hex("5e5cd55c41f69080575d7999c25a5bfb")
        let mask = sample.withUnsafeBytes { aead.sequenceMask(sample: $0.baseAddress!) }
        XCTAssertEqual([mask.0, mask.1], [0xae, 0xfe])
    }

    func testSealedRecordsOpenWithOpenSSLAndTheReverse() throws {
        let algorithms: [(RecordAEAD.Algorithm, OpaquePointer?)] = [
            (.aes128GCM, EVP_aes_128_gcm()), (.aes256GCM, EVP_aes_256_gcm()), (.chacha20Poly1305, EVP_chacha20_poly1305()),
        ]
        for (algorithm, cipher) in algorithms {
            let key = (0..<algorithm.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
            let sealer = try XCTUnwrap(RecordAEAD(algorithm: algorithm, key: key, sequenceNumberKey: key))
            let nonce = (0..<12).map { UInt8($0 &* 7) }
            let header: [UInt8] = [0x2f, 0x12, 0x34, 0x05, 0x00]
            for size in [0, 1, 16, 1_200, 16_383] {
                let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                let trailer: [UInt8] = [0x17]
                var sealed = [UInt8](repeating: 0, count: size + 1 + RecordAEAD.tagLength)
                let ok = nonce.withUnsafeBufferPointer { nonce in
                    header.withUnsafeBytes { header in plaintext.withUnsafeBytes { plain in trailer.withUnsafeBytes { trailer in
                        sealed.withUnsafeMutableBytes { sealer.seal(nonce: nonce.baseAddress!, additionalData: header, plaintext: plain,
                                                                    trailer: trailer, into: $0.baseAddress!) }
                    } } }
                }
                XCTAssertTrue(ok, "\(algorithm) \(size)")
                let expected = try Self.openSSLSeal(cipher, key: key, nonce: nonce, header: header, plaintext: plaintext + trailer)
                XCTAssertEqual(sealed, expected, "\(algorithm) \(size): BoringSSL and OpenSSL seal alike")

                let opener = try XCTUnwrap(RecordAEAD(algorithm: algorithm, key: key, sequenceNumberKey: key))
                var opened = [UInt8](repeating: 0, count: size + 1)
                XCTAssertTrue(Self.open(opener, nonce: nonce, header: header, record: expected, into: &opened))
                XCTAssertEqual(opened, plaintext + trailer)
                var tampered = expected
                tampered[tampered.count / 2] ^= 0x80
                XCTAssertFalse(Self.open(opener, nonce: nonce, header: header, record: tampered, into: &opened), "\(algorithm) \(size)")
            }
        }
    }

    func testKeysOfTheWrongLengthAreRefused() {
        XCTAssertNil(RecordAEAD(algorithm: .aes128GCM, key: [UInt8](repeating: 1, count: 32), sequenceNumberKey: [UInt8](repeating: 1, count: 16)))
        XCTAssertNil(RecordAEAD(algorithm: .chacha20Poly1305, key: [UInt8](repeating: 1, count: 32), sequenceNumberKey: [UInt8](repeating: 1, count: 16)))
    }

    private static func open(_ aead: RecordAEAD, nonce: [UInt8], header: [UInt8], record: [UInt8], into output: inout [UInt8]) -> Bool {
        nonce.withUnsafeBufferPointer { nonce in header.withUnsafeBytes { header in record.withUnsafeBytes { record in
            output.withUnsafeMutableBytes { aead.open(nonce: nonce.baseAddress!, additionalData: header, ciphertext: record, into: $0.baseAddress!) }
        } } }
    }

    /// The record as the system OpenSSL seals it: ciphertext, then the 16-byte tag.
    private static func openSSLSeal(_ cipher: OpaquePointer?, key: [UInt8], nonce: [UInt8], header: [UInt8], plaintext: [UInt8]) throws -> [UInt8] {
        let context = try XCTUnwrap(EVP_CIPHER_CTX_new())
        defer { EVP_CIPHER_CTX_free(context) }
        var output = [UInt8](repeating: 0, count: plaintext.count + 16)
        var length: Int32 = 0
        XCTAssertEqual(EVP_EncryptInit_ex(context, cipher, nil, key, nonce), 1)
        XCTAssertEqual(EVP_EncryptUpdate(context, nil, &length, header, Int32(header.count)), 1)
        try output.withUnsafeMutableBufferPointer { out in
            XCTAssertEqual(EVP_EncryptUpdate(context, out.baseAddress, &length, plaintext, Int32(plaintext.count)), 1)
            XCTAssertEqual(Int(length), plaintext.count)
            XCTAssertEqual(EVP_EncryptFinal_ex(context, out.baseAddress! + plaintext.count, &length), 1)
            let tag = try XCTUnwrap(out.baseAddress) + plaintext.count
            XCTAssertEqual(EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1)
        }
        return output
    }
}
