import XCTest
@testable import Taps

/// SSKE on dtls-chunk-sctp: keying material from the exporter of the DTLS 1.3 key management
/// connection in use, the same at both ends, another after a rekey, never the chunk's own keys.
final class DTLSChunkKeyExportTests: XCTestCase {
    func testBothEndsExportTheSameBytesAndARekeyChangesThem() async throws {
        let listener = try await DTLSChunkDTLS13Tests.listener(DTLSChunkRekeyTests.security(server: true))
        let client = try await DTLSChunkDTLS13Tests.client(listener.localAddress.port, DTLSChunkRekeyTests.security(server: false))
            .initiate(timeout: .seconds(10))
        try await client.send("hello")
        let server = try await listener.firstConnection()
        _ = try await server.receive()

        let clientBytes = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        let serverBytes = try await server.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        XCTAssertEqual(clientBytes.count, 32)
        XCTAssertEqual(clientBytes, serverBytes, "both ends derive the same secret")
        let otherContext = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 4], length: 32)
        let noContext = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: nil, length: 32)
        XCTAssertNotEqual(otherContext, clientBytes)
        XCTAssertNotEqual(noContext, clientBytes, "no context is not an empty one")

        try await client.updateKeys()
        _ = try await DTLSChunkRekeyTests.waitFor(client) { $0.sendEpoch == 4 && $0.connectionIndex == 4 }
        let serverProgress = try await DTLSChunkRekeyTests.waitFor(server) { $0.connectionIndex == 4 }
        XCTAssertEqual(serverProgress.connectionIndex, 4)
        let clientAfter = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        let serverAfter = try await server.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        XCTAssertEqual(clientAfter, serverAfter)
        XCTAssertNotEqual(clientAfter, clientBytes, "the new key management connection has its own exporter secret")
        await client.close()
        await listener.stop()
    }

    func testTheChunksOwnLabelsAndBadLengthsAreRefused() async throws {
        let listener = try await DTLSChunkDTLS13Tests.listener()
        let echo = startEcho(listener)
        let client = try await DTLSChunkDTLS13Tests.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        let ownLabel = DTLSChunkKeyExport.label(restart: false, client: true, part: "KEY")
        let refused = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await client.exportKeyingMaterial(label: ownLabel, context: nil, length: 16)
        }
        XCTAssertTrue(refused?.message.contains("DTLS chunk's own keys") == true, String(describing: refused))
        await XCTAssertThrowsTransportError(.invalidArgument) { try await client.exportKeyingMaterial(label: "EXPORTER-x", length: 0) }
        await XCTAssertThrowsTransportError(.invalidArgument) { try await client.exportKeyingMaterial(label: "", length: 16) }
        await client.close()
        await listener.stop()
        echo.cancel()
    }

    /// Pre-shared parameters have no handshake and so no exporter: a typed refusal (a required SSKE
    /// rules them out at selection: `DTLSChunkSCTPTests`).
    func testPreSharedParametersHaveNoExporter() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let echo = startEcho(listener)
        let client = try await DTLSChunkSCTPTests.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
        let error = await XCTAssertThrowsTransportError(.notSupported) {
            try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
        }
        XCTAssertTrue(error?.message.contains("pre-shared") == true, String(describing: error))
        await client.close()
        await listener.stop()
        echo.cancel()
    }
}
