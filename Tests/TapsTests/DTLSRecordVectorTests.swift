import XCTest
@testable import Taps

/// The DTLS 1.3 record protection the chunk reuses, checked byte for byte against a published
/// exchange: "The Illustrated DTLS 1.3 Connection" by Michael Driscoll (https://dtls.xargs.org,
/// MIT licence, Copyright (c) 2022 Michael Driscoll). Its key log gives the traffic secrets; the keys
/// are derived here with the "dtls13" labels, and each protected record must open to the published
/// DTLSInnerPlaintext (content, then content type).
final class DTLSRecordVectorTests: XCTestCase {
    // keylog.txt of the exchange.
    static let clientHandshakeSecret = "33e472fb8d821b0193314626bebee307ccbd1aeb3d3a17ba468888ffc5246da1"
    static let serverHandshakeSecret = "8ad7990b9d249bcbaa0805d8d3f3ad2259e75f3a42c5d84db3ea3c6ee57b3d38"
    static let clientTrafficSecret = "a9185352f61134f1d24eaa4a930fff2edca40ce8c06420848deb27699e9baf2c"
    static let serverTrafficSecret = "4ab12ae4022fc013eca21abb071e13aa24a150e3876c660fe0ed10a8eebd8f17"

    struct Vector {
        let name: String
        let secret: String
        let sequence: UInt64
        let protected: String
        let inner: String
    }

    /// Records as sent (unified header with a 16-bit sequence number and a length), and their
    /// plaintext. Epoch 2 (handshake keys) and epoch 3 (application keys), both directions.
    static let vectors = [
        Vector(name: "server EncryptedExtensions", secret: serverHandshakeSecret, sequence: 0,
               protected: "2e79fa002fee9dcff3f8679a4859fe68377fb34ada85df879c673e501d7a4e8f1950e0fcf67fe442e7d7d2b8a3d5fa59574ffd00",
               inner: "0800001200010000000000120010000a000c000a0017001d00180019010016"),
        Vector(name: "server Finished", secret: serverHandshakeSecret, sequence: 3,
               protected: "2e0bb8003da44135732a099823b8a5f61a2b35ce921a89abb152f876cd26797dc3ed73d917b299c16928b9cf9e58d1cd58686b8b90ce9fe6454e0cef9efc40f2397a",
               inner: "1400002000040000000000201d89aa62e5f88a0fc952884715d8acb3798659afb9e7789a8db2b3816ba4524616"),
        Vector(name: "client Finished", secret: clientHandshakeSecret, sequence: 0,
               protected: "2ec248003d8a2cd52d5000f8786afb47cdf0b8f2b81342b00c43dce64b1d0194d2e201f681750978528bbe26af79612401c007a2c5f75f7cffb7465bc01d23d8511f",
               inner: "1400002000010000000000206f2801396b0e90ebb4a3ba384abcfc6b24201abd81b316b2391da378377facf516"),
        Vector(name: "server ACK", secret: serverTrafficSecret, sequence: 0,
               protected: "2f31500023ea80ab8e08c93895418d243571ea6de7d863ee84230bb6043cb384df94b6da285a3bc4",
               inner: "0010000000000000000200000000000000001a"),
        Vector(name: "client ping", secret: clientTrafficSecret, sequence: 0,
               protected: "2f683f00157d72278b6c649f1e7b56b3cad411faf7bd518bfb15", inner: "70696e6717"),
        Vector(name: "server pong", secret: serverTrafficSecret, sequence: 1,
               protected: "2fa2580015f5bd33f27b72780e351fa00703fb9f658c689f95ae", inner: "706f6e6717"),
        Vector(name: "server close_notify", secret: serverTrafficSecret, sequence: 2,
               protected: "2f690c0013dd8cd07daa964fd1ab508825378fc96fa8b1e8", inner: "010015"),
    ]

    func hex(_ text: String) throws -> [UInt8] { try XCTUnwrap(Hex.decode(text), text) }

    func keys(_ secret: String) throws -> DTLSChunkKeyMaterial {
        try DTLSChunkKeyMaterial.derive(fromTrafficSecret: hex(secret), suite: .aes128GCMSHA256)
    }

    func testTrafficKeysFollowTheDTLS13LabelsOfRFC9147() throws {
        // The same secret under TLS 1.3's labels gives different keys: the prefix is in the derivation.
        let secret = try hex(Self.clientTrafficSecret)
        let dtls = try keys(Self.clientTrafficSecret)
        let tls = try HKDFExpandLabel(digest: "SHA256", prefix: "tls13 ").expand(secret: secret, label: "key", length: 16)
        XCTAssertEqual(dtls.key.count, 16)
        XCTAssertEqual(dtls.iv.count, 12)
        XCTAssertEqual(dtls.sequenceNumberKey.count, 16)
        XCTAssertNotEqual(dtls.key, tls)
        XCTAssertNotEqual(dtls.key, dtls.sequenceNumberKey)
    }

    func testEveryPublishedProtectedRecordOpensToItsPlaintext() throws {
        for vector in Self.vectors {
            let cipher = try RecordCipher(suite: .aes128GCMSHA256, keys: keys(vector.secret), sealing: false)
            let record = try hex(vector.protected)
            var output = [UInt8](repeating: 0, count: record.count)
            // Expect the number just before the published one, as a receiver that saw the earlier records would.
            let expected = vector.sequence == 0 ? 0 : vector.sequence - 1
            let result = record.withUnsafeBytes { bytes in
                output.withUnsafeMutableBytes { out in
                    DTLSRecord.open(bytes, cipher: cipher, expected: expected, isFresh: { _ in true }, into: out.baseAddress!)
                }
            }
            let inner = try hex(vector.inner)
            XCTAssertEqual(result, .opened(sequence: vector.sequence, innerLength: inner.count), vector.name)
            XCTAssertEqual(Array(output.prefix(inner.count)), inner, vector.name)
        }
    }

    func testSealingThePublishedPlaintextGivesThePublishedRecord() throws {
        // Seal "ping" the way the published client did (header 2f, sequence 0, length 0x15), mask the
        // sequence number after encryption, and compare every byte.
        for vector in Self.vectors {
            let cipher = try RecordCipher(suite: .aes128GCMSHA256, keys: keys(vector.secret), sealing: true)
            let published = try hex(vector.protected)
            let inner = try hex(vector.inner)
            var record = Array(published.prefix(5))
            record[1] = UInt8(vector.sequence >> 8)
            record[2] = UInt8(vector.sequence & 0xFF)
            let header = record
            record += [UInt8](repeating: 0, count: inner.count + DTLSChunkCipherSuite.tagLength)
            let sealed = record.withUnsafeMutableBytes { out in
                header.withUnsafeBytes { aad in
                    inner.withUnsafeBytes { plain in cipher.seal(sequence: vector.sequence, header: aad, plaintext: plain, into: out.baseAddress! + 5) }
                }
            }
            XCTAssertTrue(sealed, vector.name)
            let mask = record.withUnsafeBytes { cipher.sequenceMask(sample: $0.baseAddress! + 5) }
            record[1] ^= mask.0
            record[2] ^= mask.1
            XCTAssertEqual(Hex.encode(record), vector.protected, vector.name)
        }
    }

    func testATamperedPublishedRecordDoesNotOpen() throws {
        let vector = try XCTUnwrap(Self.vectors.first { $0.name == "client ping" })
        let cipher = try RecordCipher(suite: .aes128GCMSHA256, keys: keys(vector.secret), sealing: false)
        let record = try hex(vector.protected)
        for offset in record.indices where offset != 3 && offset != 4 {  // the length field only bounds the record
            var tampered = record
            tampered[offset] ^= 0x01
            var output = [UInt8](repeating: 0, count: record.count)
            let result = tampered.withUnsafeBytes { bytes in
                output.withUnsafeMutableBytes { DTLSRecord.open(bytes, cipher: cipher, expected: 0, isFresh: { _ in true }, into: $0.baseAddress!) }
            }
            XCTAssertNotEqual(result, .opened(sequence: 0, innerLength: 5), "byte \(offset)")
        }
    }
}
