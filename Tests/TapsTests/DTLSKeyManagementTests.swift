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
