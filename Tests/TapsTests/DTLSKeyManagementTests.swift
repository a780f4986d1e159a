import XCTest
import TapsDTLS13
@testable import Taps

/// The DTLS 1.3 key management method's pieces without SCTP: its messages, and DTLS chunk keys
/// exported from a real DTLS 1.3 handshake on BoringSSL.
final class DTLSKeyManagementTests: XCTestCase {
    func testAMessageCarriesTheConnectionIndexInItsFirstByte() throws {
        let message = DTLSKeyManagementMessage(connectionIndex: 6, records: [0x2f, 1, 2])
        XCTAssertEqual(message.bytes, [0x02, 0x2f, 1, 2], "6 & 3 in the low bits")
        XCTAssertEqual(DTLSKeyManagementMessage(bytes: [0xFD, 9]), DTLSKeyManagementMessage(connectionIndex: 1, records: [9]),
                       "reserved bits ignored")
        XCTAssertNil(DTLSKeyManagementMessage(bytes: [3]), "no records")
        XCTAssertEqual(DTLSKeyManagementMessage.firstConnectionIndex & 3, 3)
        XCTAssertEqual(DTLSKeyManagementMessage.protectionValid, Array("OK".utf8))
    }

    /// A real ClientHello opens a connection (simultaneous rekeys are told apart by it); the
    /// server's first flight, a truncated record and another content type do not.
    func testOnlyAClientHelloStartsAConnection() throws {
        let (client, server) = try DTLS13EngineTests.pair()
        client.start()
        // The first datagram starts the ClientHello (the engine's datagrams here are small enough to
        // split one with X25519MLKEM768 in two).
        let flight = client.takeOutgoing()
        let hello = try XCTUnwrap(flight.first)
        XCTAssertTrue(DTLSKeyManagementMessage(connectionIndex: 4, records: hello).startsWithClientHello)
        flight.forEach(server.receive)
        let serverFlight = try XCTUnwrap(server.takeOutgoing().first)
        XCTAssertFalse(DTLSKeyManagementMessage(connectionIndex: 4, records: serverFlight).startsWithClientHello)
        XCTAssertFalse(DTLSKeyManagementMessage(connectionIndex: 4, records: Array(hello.prefix(13))).startsWithClientHello)
        var alert = hello
        alert[0] = 21
        XCTAssertFalse(DTLSKeyManagementMessage(connectionIndex: 4, records: alert).startsWithClientHello)
    }

    /// The TSNs the drain rule compares: serial number arithmetic across the 32-bit wrap, DATA and
    /// I-DATA read going out, SACK and NR-SACK coming in.
    func testTheDrainRuleReadsTSNsWithSerialArithmetic() {
        XCTAssertTrue(SCTPTSNScan.precedes(1, 2))
        XCTAssertTrue(SCTPTSNScan.precedes(UInt32.max, 0), "across the wrap")
        XCTAssertFalse(SCTPTSNScan.precedes(5, 5))
        XCTAssertFalse(SCTPTSNScan.precedes(0, UInt32.max))
        func chunk(_ type: UInt8, _ value: UInt32, length: Int = 16) -> [UInt8] {
            [type, 0, 0, UInt8(length)] + withUnsafeBytes(of: value.bigEndian, Array.init) + [UInt8](repeating: 0, count: length - 8)
        }
        let common = [UInt8](repeating: 0, count: 12)
        let data = common + chunk(3, 99) + chunk(0, UInt32.max) + chunk(64, 1, length: 20)
        data.withUnsafeBytes { bytes in
            XCTAssertEqual(SCTPTSNScan.highestDataTSN(bytes), 1, "I-DATA 1 comes after DATA 2^32-1")
            XCTAssertEqual(SCTPTSNScan.cumulativeTSNAck(bytes), 99)
        }
        let nrSack = common + chunk(16, 7)
        nrSack.withUnsafeBytes { bytes in
            XCTAssertNil(SCTPTSNScan.highestDataTSN(bytes))
            XCTAssertEqual(SCTPTSNScan.cumulativeTSNAck(bytes), 7)
        }
        // A chunk whose length runs past the packet ends the walk.
        let truncated = common + Array(chunk(0, 5).prefix(10))
        truncated.withUnsafeBytes { XCTAssertNil(SCTPTSNScan.highestDataTSN($0)) }
    }

    /// A finished DTLS 1.3 handshake between two engines in memory (the test PKI, mutual).
    static func handshake() throws -> (client: DTLS13Engine, server: DTLS13Engine) {
        let (client, server) = try DTLS13EngineTests.pair()
        client.start()
        DTLS13EngineTests.shuttle(client, server)
        XCTAssertEqual(client.state, .established)
        return (client, server)
    }

    static func keys(_ engine: DTLS13Engine, _ context: [UInt8], suite: DTLSChunkCipherSuite = .aes128GCMSHA256) throws -> DTLSChunkKeyExport.Keys {
        try DTLSChunkKeyExport.derive(suite: suite, downgradePreventionData: context) { label, context, length in
            engine.exportKeyingMaterial(label: label, context: context, length: length)
        }
    }

    func testKeysExportedOnBothEndsProtectTheChunkBetweenThem() throws {
        let (client, server) = try Self.handshake()
        let parameters: [UInt8] = [0x80, 0x06, 0, 10, 0, 0, 0, 1, 1, 193] + [0x80, 0x06, 0, 10, 0, 0, 0, 2, 2, 193]
        for suite in DTLSChunkCipherSuite.allCases {
            let atClient = try Self.keys(client, parameters, suite: suite)
            let atServer = try Self.keys(server, parameters, suite: suite)
            XCTAssertEqual(atClient, atServer, "both ends export the same material")
            XCTAssertNotEqual(atClient.clientWrite, atClient.serverWrite)
            XCTAssertNotEqual(atClient.clientWrite, atClient.restartClientWrite)
            XCTAssertEqual(atClient.clientWrite.key.count, suite.keyLength)
            // The DTLS client writes with the client keys; the server reads with them.
            var sender = DTLSChunkProtection(), receiver = DTLSChunkProtection()
            try sender.establishSendKeys(atClient.clientWrite, suite: suite, for: DTLSKeyContextID(epoch: 3))
            try receiver.establishReceiveKeys(atServer.clientWrite, suite: suite, for: DTLSKeyContextID(epoch: 3))
            let packet = DTLSChunkProtectionTests.dataPacket(Array("exported".utf8))
            let protected = try DTLSChunkProtectionTests.protect(packet, with: &sender)
            XCTAssertEqual(DTLSChunkProtectionTests.unprotect(protected, with: &receiver).1, packet, "\(suite)")
        }
    }

    func testAChangedParameterGivesKeysThatDoNotInteroperate() throws {
        // Downgrade prevention: an end that saw other 0x8006 bytes derives other keys.
        let (client, server) = try Self.handshake()
        let sent: [UInt8] = [0x80, 0x06, 0, 11, 0, 0, 0, 1, 1, 193, 0]
        let altered: [UInt8] = [0x80, 0x06, 0, 10, 0, 0, 0, 1, 1, 0]
        let atClient = try Self.keys(client, sent)
        let atServer = try Self.keys(server, altered)
        XCTAssertNotEqual(atClient.clientWrite, atServer.clientWrite)
        var sender = DTLSChunkProtection(), receiver = DTLSChunkProtection()
        try sender.establishSendKeys(atClient.clientWrite, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 3))
        try receiver.establishReceiveKeys(atServer.clientWrite, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 3))
        let protected = try DTLSChunkProtectionTests.protect(DTLSChunkProtectionTests.dataPacket([1]), with: &sender)
        XCTAssertEqual(DTLSChunkProtectionTests.unprotect(protected, with: &receiver).0, .dropped(.failedAuthentication))
    }

    func testTheLabelsFollowTheDraftAndOurSequenceNumberKeyPattern() {
        XCTAssertEqual(DTLSChunkKeyExport.label(restart: false, client: true, part: "KEY"), "EXPORTER_DTLS_IN_SCTP_PRIMARY_CLIENT_KEY")
        XCTAssertEqual(DTLSChunkKeyExport.label(restart: true, client: false, part: "IV"), "EXPORTER_DTLS_IN_SCTP_RESTART_SERVER_IV")
        XCTAssertEqual(DTLSChunkKeyExport.label(restart: false, client: false, part: "SN_KEY"), "EXPORTER_DTLS_IN_SCTP_PRIMARY_SERVER_SN_KEY")
    }
}
