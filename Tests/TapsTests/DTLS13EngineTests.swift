import Foundation
import TapsDTLS13
import XCTest

/// The DTLS 1.3 engine on BoringSSL by itself: two ends in memory, datagrams handed across by the
/// test, timers on a virtual clock.
final class DTLS13EngineTests: XCTestCase {
    static let pki = TestPKI.shared

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// Server: the test PKI's server certificate; client: its RSA certificate; both trust the test CA.
    static func pair(groups: [String] = [], clientTrusts: String? = nil, serverTrusts: String? = nil) throws -> (DTLS13Engine, DTLS13Engine) {
        // Certificates are valid from when the PKI was made; the virtual clock starts at now.
        DTLS13VirtualClock.milliseconds.store(UInt64(Date().timeIntervalSince1970 * 1_000), ordering: .relaxed)
        func configuration(cert: String, key: String, trusts: String) throws -> DTLS13Configuration {
            var configuration = DTLS13Configuration(certificateChainPEM: try bytes(cert), privateKeyPEM: try bytes(key),
                                                    trustedRootsPEM: try bytes(trusts))
            configuration.groups = groups
            configuration.usesVirtualClock = true
            return configuration
        }
        let server = try DTLS13Context(role: .server, configuration: configuration(
            cert: pki.serverCert, key: pki.serverKey, trusts: serverTrusts ?? pki.caPEM))
        let client = try DTLS13Context(role: .client, configuration: configuration(
            cert: pki.path("rsa.pem"), key: pki.path("rsa.key"), trusts: clientTrusts ?? pki.caPEM))
        return (try DTLS13Engine(context: client), try DTLS13Engine(context: server))
    }

    /// Hands datagrams across until neither end has any to send; `drop` decides which are lost.
    static func shuttle(_ client: DTLS13Engine, _ server: DTLS13Engine, drop: (_ fromClient: Bool, _ index: Int) -> Bool = { _, _ in false }) {
        var index = 0
        while true {
            let fromClient = client.takeOutgoing(), fromServer = server.takeOutgoing()
            if fromClient.isEmpty && fromServer.isEmpty { return }
            for datagram in fromClient {
                defer { index += 1 }
                if !drop(true, index) { server.receive(datagram) }
            }
            for datagram in fromServer {
                defer { index += 1 }
                if !drop(false, index) { client.receive(datagram) }
            }
        }
    }

    func testAMutuallyAuthenticatedHandshakeAgreesOnExportsAndCarriesRecordsBothWays() throws {
        let (client, server) = try Self.pair()
        client.start()
        Self.shuttle(client, server)
        XCTAssertEqual(client.state, .established)
        XCTAssertEqual(server.state, .established)
        XCTAssertEqual(client.version, 0xfefc, "DTLS 1.3")
        XCTAssertEqual(client.cipherSuite, server.cipherSuite)
        XCTAssertTrue([0x1301, 0x1302, 0x1303].contains(try XCTUnwrap(client.cipherSuite)))
        XCTAssertEqual(client.group, "X25519MLKEM768", "BoringSSL's default group")
        // Both ends saw the other's certificate: mutual authentication.
        XCTAssertNotNil(server.peerCertificateDER)
        XCTAssertNotNil(client.peerCertificateDER)
        XCTAssertNotEqual(server.peerCertificateDER, client.peerCertificateDER)
        let label = "EXPORTER_DTLS_IN_SCTP_PRIMARY_CLIENT_KEY"
        let clientExport = try XCTUnwrap(client.exportKeyingMaterial(label: label, context: [1, 2, 3], length: 32))
        XCTAssertEqual(server.exportKeyingMaterial(label: label, context: [1, 2, 3], length: 32), clientExport)
        XCTAssertNotEqual(server.exportKeyingMaterial(label: label, context: [1, 2, 4], length: 32), clientExport, "the context is bound")
        try client.send(Array("ping".utf8))
        Self.shuttle(client, server)
        XCTAssertEqual(server.takePlaintext(), [Array("ping".utf8)])
        try server.send(Array("pong".utf8))
        Self.shuttle(client, server)
        XCTAssertEqual(client.takePlaintext(), [Array("pong".utf8)])
    }

    func testX25519AndP256HandshakesToo() throws {
        for group in ["X25519", "P-256"] {
            let (client, server) = try Self.pair(groups: [group])
            client.start()
            Self.shuttle(client, server)
            XCTAssertEqual(server.state, .established, group)
            XCTAssertEqual(client.group, group)
        }
    }

    func testAPeerFromAnotherCAIsRejectedOnBothSides() throws {
        // The server trusts only the other CA, so the client's certificate does not validate.
        let (client, server) = try Self.pair(serverTrusts: Self.pki.otherCA)
        client.start()
        Self.shuttle(client, server)
        guard case .failed(let error) = server.state else { return XCTFail("server: \(server.state)") }
        XCTAssertEqual(error.kind, .certificateRejected, "\(error)")
        guard case .failed = client.state else { return XCTFail("client: \(client.state)") }
        XCTAssertThrowsError(try client.send([1]))
    }

    func testALostFlightIsSentAgainWhenTheVirtualClockPassesItsTimeout() throws {
        let (client, server) = try Self.pair()
        client.start()
        // Lose the server's whole first flight.
        Self.shuttle(client, server) { fromClient, _ in !fromClient }
        XCTAssertEqual(client.state, .handshaking)
        let timeout = try XCTUnwrap(client.timeoutMilliseconds, "the client waits on a timer")
        XCTAssertGreaterThan(timeout, 0)
        DTLS13VirtualClock.advance(byMilliseconds: timeout + 1)
        client.handleTimeout()
        server.handleTimeout()
        Self.shuttle(client, server)
        XCTAssertEqual(client.state, .established)
        XCTAssertEqual(server.state, .established)
    }

    /// BoringSSL and the system OpenSSL live in one process only because every BoringSSL symbol our
    /// module calls is prefixed: an unprefixed SSL_ or EVP_ reference would bind to OpenSSL.
    func testTheDTLS13ModuleReferencesOnlyPrefixedBoringSSLSymbols() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let build = root.appendingPathComponent(".build/debug/TapsDTLS13.build")
        let objects = try FileManager.default.contentsOfDirectory(atPath: build.path).filter { $0.hasSuffix(".o") }
        XCTAssertFalse(objects.isEmpty, "no object files in \(build.path)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nm")
        process.arguments = ["-u"] + objects.map { build.appendingPathComponent($0).path }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let symbols = text.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        XCTAssertTrue(symbols.contains { $0.hasPrefix("CNIOBoringSSL_SSL_") }, "nm saw no BoringSSL calls at all")
        let unprefixed = symbols.filter { symbol in
            ["SSL_", "EVP_", "AES_", "X509", "BIO_", "PEM_", "ERR_", "CRYPTO_", "OPENSSL_", "DTLS"].contains { symbol.hasPrefix($0) }
        }
        XCTAssertEqual(unprefixed, [], "symbols that would bind to the system OpenSSL")
    }
}
