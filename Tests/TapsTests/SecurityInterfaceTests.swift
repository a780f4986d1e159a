import Foundation
import XCTest
@testable import Taps

/// SSKE and KU over real handshakes, between Taps endpoints and against openssl s_server.
final class SecurityInterfaceTests: XCTestCase {
    let pki = TestPKI.shared

    private func pair(transport: TransportProperties = .reliableInOrderStream, clientSecurity: SecurityParameters? = nil)
        async throws -> (Listener, Connection, Connection) {
        let listener = try await Preconnection(local: .loopback(), transport: transport, security: pki.serverSecurity).listen()
        let client = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: transport,
                                             security: clientSecurity ?? pki.clientSecurity).initiate()
        return (listener, client, try await listener.firstConnection())
    }

    func testExportedKeyingMaterialMatchesOnBothEnds() async throws {
        let (listener, client, server) = try await pair()
        let ours = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
        let theirs = try await server.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
        XCTAssertEqual(ours.count, 32)
        XCTAssertEqual(ours, theirs)
        let withContext = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        let serverWithContext = try await server.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [1, 2, 3], length: 32)
        XCTAssertEqual(withContext, serverWithContext)
        XCTAssertNotEqual(withContext, ours)
        let otherLabel = try await client.exportKeyingMaterial(label: "EXPORTER-other", length: 32)
        XCTAssertNotEqual(otherLabel, ours)
        do {
            _ = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 0)
            XCTFail("a zero length must be refused")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .invalidArgument)
        }
        await client.abort()
        await server.abort()
        await listener.stop()
    }

    func testExportOnDTLSAndNoKeyUpdateThere() async throws {
        let (listener, client, server) = try await pair(transport: .unreliableDatagram)
        XCTAssertEqual(client.stack.name, "dtls-udp")
        let ours = try await client.exportKeyingMaterial(label: "EXPORTER-dtls", length: 16)
        let theirs = try await server.exportKeyingMaterial(label: "EXPORTER-dtls", length: 16)
        XCTAssertEqual(ours.count, 16)
        XCTAssertEqual(ours, theirs)
        do {
            try await client.updateKeys()
            XCTFail("DTLS 1.2 has no KeyUpdate")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .notSupported)
        }
        await client.close()
        await server.close()
        await listener.stop()
    }

    func testExportMatchesOpenSSLServer() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-keymatexport", "EXPORTER-taps-test", "-keymatexportlen", "32"])
        defer { server.terminate() }
        let client = try await Preconnection(remote: .host("localhost", port: port), security: pki.clientSecurity).initiate()
        try await client.send("x\n")
        let printed = await server.waitFor("Keying material: ")
        XCTAssertTrue(printed, server.text)
        let line = server.text.split(separator: "\n").first { $0.contains("Keying material: ") }!
        let hex = line.split(separator: " ").last!.lowercased()
        let ours = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
        XCTAssertEqual(ours.map { String(format: "%02x", $0) }.joined(), hex)
        await client.abort()
    }

    func testServerExportMatchesOpenSSLClient() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--cert", pki.serverCert, "--key", pki.serverKey,
                                                                "--count", "1", "--export", "EXPORTER-taps-test:32"])
        defer { server.terminate() }
        let client = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caPEM,
                                                           "-keymatexport", "EXPORTER-taps-test", "-keymatexportlen", "32"])
        defer { client.terminate() }
        let clientPrinted = await client.waitFor("Keying material: ")
        let serverPrinted = await server.waitFor("export: ")
        XCTAssertTrue(clientPrinted && serverPrinted, client.text + server.text)
        let theirs = client.text.split(separator: "\n").first { $0.contains("Keying material: ") }?.split(separator: " ").last?.lowercased()
        let ours = server.text.split(separator: "\n").first { $0.hasPrefix("export: ") }.map { String($0.dropFirst(8)) }
        XCTAssertNotNil(ours)
        XCTAssertEqual(ours, theirs)
    }

    func testExportOnAStackWithoutSecurityIsNotSupported() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let client = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        XCTAssertEqual(client.stack.name, "tcp")
        await XCTAssertThrowsTransportError(.notSupported) { try await client.exportKeyingMaterial(label: "EXPORTER-x", length: 16) }
        await XCTAssertThrowsTransportError(.notSupported) { try await client.updateKeys() }
        await XCTAssertThrowsTransportError(.notSupported) { try await client.exportSession() }
        await client.abort()
        await listener.stop()
    }

    func testKeyUpdateBothWaysWhileTrafficContinues() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity,
                                               framer: LengthPrefixFramer()).listen()
        let client = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableMessage,
                                             security: pki.clientSecurity, framer: LengthPrefixFramer()).initiate()
        let server = try await listener.firstConnection()
        let clientEvents = await client.events()
        let serverEvents = await server.events()

        try await client.send("before")
        let before = try await server.receive()
        XCTAssertEqual(before.text, "before")
        try await client.updateKeys(requestPeerUpdate: true)
        try await client.send("after")
        let after = try await server.receive()
        XCTAssertEqual(after.text, "after", "traffic continues across the KeyUpdate")
        // The server answers the request with its own KeyUpdate, which goes out before its data.
        try await server.send("reply")
        let reply = try await client.receive()
        XCTAssertEqual(reply.text, "reply")

        await client.abort()
        await server.abort()
        var clientUpdates: [Bool] = [], serverUpdates: [Bool] = []
        for await event in clientEvents { if case .keysUpdated(let byPeer) = event { clientUpdates.append(byPeer) } }
        for await event in serverEvents { if case .keysUpdated(let byPeer) = event { serverUpdates.append(byPeer) } }
        XCTAssertEqual(clientUpdates, [false, true], "our update, then the peer's answer")
        XCTAssertEqual(serverUpdates, [true], "the server saw the client's KeyUpdate")
        await listener.stop()
    }

    func testKeyUpdateReachesOpenSSLServer() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-msg"])
        defer { server.terminate() }
        let client = try await Preconnection(remote: .host("localhost", port: port), security: pki.clientSecurity).initiate()
        try await client.updateKeys()
        try await client.send("after the update\n")
        let sawUpdate = await server.waitFor("KeyUpdate")
        XCTAssertTrue(sawUpdate, "s_server -msg shows no KeyUpdate: \(server.text.suffix(500))")
        let sawData = await server.waitFor("after the update")
        XCTAssertTrue(sawData, "data after the KeyUpdate did not decrypt at the peer")
        await client.abort()
    }

    func testKeyUpdateNeedsTLS13AndSecurity() async throws {
        var tls12 = pki.clientSecurity
        tls12.allowedVersions = [.tls12]
        let (listener, client, server) = try await pair(clientSecurity: tls12)
        do {
            try await client.updateKeys()
            XCTFail("TLS 1.2 has no KeyUpdate")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .notSupported)
            XCTAssertTrue(error.message.contains("TLS 1.3"), error.message)
        }
        await client.abort()
        await server.abort()
        await listener.stop()

        let plainListener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let plain = try await Preconnection(remote: .loopback(port: plainListener.localAddress.port), security: .disabled).initiate()
        do {
            _ = try await plain.exportKeyingMaterial(label: "EXPORTER-x", length: 8)
            XCTFail("plain TCP has nothing to export")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .notSupported)
        }
        await plain.abort()
        await plainListener.stop()
    }
}
