import Foundation
import Synchronization
import XCTest
@testable import Taps

/// IPK: identities from PEM and DER, files and memory, RSA / ECDSA / Ed25519 keys, and the identity
/// challenge callback on both roles, against Taps peers and openssl.
final class IdentityTests: XCTestCase {
    let pki = TestPKI.shared

    private func listen(_ security: SecurityParameters) async throws -> Listener {
        try await Preconnection(local: .loopback(), transport: .reliableMessage, security: security, framer: LengthPrefixFramer()).listen()
    }

    private func connect(_ port: UInt16, host: String = "localhost", _ security: SecurityParameters? = nil) async throws -> Connection {
        try await Preconnection(remote: .host(host, port: port), transport: .reliableMessage, security: security ?? pki.clientSecurity,
                                framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
    }

    private func roundTrip(_ connection: Connection, _ text: String) async throws {
        try await connection.send(text)
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, text)
    }

    func testRSAAndEd25519AndECDSAKeys() async throws {
        let identities: [(String, SecurityParameters.Identity)] = [
            ("ecdsa", .files(certificate: pki.serverCert, key: pki.serverKey)), ("rsa", pki.identity("rsa")),
            ("ed25519", pki.identity("ed25519")),
        ]
        for (name, identity) in identities {
            let listener = try await listen(.server(identity: identity))
            let echo = startEcho(listener)
            let connection = try await connect(listener.localAddress.port)
            try await roundTrip(connection, "signed with \(name)")
            await connection.abort()
            await listener.stop()
            echo.cancel()
        }
    }

    func testEd25519IdentityAgainstOpenSSLClient() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--cert", pki.path("ed25519.pem"),
                                                                "--key", pki.path("ed25519.key"), "--count", "1"])
        defer { server.terminate() }
        let client = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caPEM,
                                                           "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"])
        defer { client.terminate() }
        client.write("ed25519 echo\n")
        let echoed = await client.waitFor("ed25519 echo")
        XCTAssertTrue(echoed, client.text)
    }

    func testDERFilesAndMemory() async throws {
        let derFiles = SecurityParameters.Identity.files(certificate: pki.path("server.der"), key: pki.path("server.key.der"))
        let certificate = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pki.path("server.der"))))
        let key = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pki.path("server.key.der"))))
        let inMemory = SecurityParameters.Identity(certificateChain: .bytes(certificate), privateKey: .bytes(key))
        for identity in [derFiles, inMemory] {
            let listener = try await listen(.server(identity: identity))
            let echo = startEcho(listener)
            let connection = try await connect(listener.localAddress.port)
            try await roundTrip(connection, "DER")
            await connection.abort()
            await listener.stop()
            echo.cancel()
        }
        // Bytes that are neither PEM nor DER are refused before listening.
        let garbage = SecurityParameters.Identity(certificateChain: .bytes([0x30, 0x03, 0x01]), privateKey: .bytes(key))
        await XCTAssertThrowsTransportError(.invalidCredentials) { try await self.listen(.server(identity: garbage)) }
    }

    func testIdentityChallengeAnswersACertificateRequest() async throws {
        var server = pki.serverSecurity
        server.requireClientCertificate = true
        server.trustedRoots = .pem(file: pki.caPEM)
        let listener = try await listen(server)
        let challenges = Mutex<[IdentityChallenge]>([])
        var client = pki.clientSecurity
        let identity = pki.identity("rsa")
        client.identityChallenge = IdentityChallengeHandler { challenge in
            challenges.withLock { $0.append(challenge) }
            try await Task.sleep(for: .milliseconds(20))  // e.g. a hardware token answering
            return identity
        }
        let connection = try await connect(listener.localAddress.port, client)
        let accepted = try await listener.firstConnection()
        let subject = await accepted.securityDetails?.peerCertificateSubject
        XCTAssertEqual(subject, "/CN=localhost")
        let seen = challenges.withLock { $0 }
        XCTAssertEqual(seen.count, 1)
        XCTAssertEqual(seen.first?.role, .client)
        XCTAssertEqual(seen.first?.serverName, "localhost")
        XCTAssertEqual(seen.first?.acceptableIssuers, ["/CN=taps test CA"])
        try await connection.send("with a late identity")
        let received = try await accepted.receive()
        XCTAssertEqual(received.text, "with a late identity")
        await connection.abort()
        await accepted.abort()
        await listener.stop()
    }

    func testIdentityChallengeAgainstOpenSSLServerThatRequiresACertificate() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-Verify", "1", "-CAfile", pki.caPEM, "-verify_return_error"])
        defer { server.terminate() }
        var client = pki.clientSecurity
        let identity = pki.identity("ed25519")
        let asked = Atomic<Int>(0)
        client.identityChallenge = IdentityChallengeHandler { _ in
            asked.add(1, ordering: .relaxed)
            return identity
        }
        let connection = try await Preconnection(remote: .host("localhost", port: port), security: client).initiate()
        try await connection.send("client certificate from a challenge\n")
        let printed = await server.waitFor("client certificate from a challenge")
        XCTAssertTrue(printed, server.text)
        XCTAssertEqual(asked.load(ordering: .relaxed), 1)
        await connection.abort()
    }

    func testServerIdentityChosenPerServerNameByChallenge() async throws {
        var server = SecurityParameters()
        let identity = pki.identity("rsa")
        let names = Mutex<[String?]>([])
        server.identityChallenge = IdentityChallengeHandler { challenge in
            names.withLock { $0.append(challenge.serverName) }
            return challenge.serverName == "localhost" ? identity : nil
        }
        let listener = try await listen(server)
        let echo = startEcho(listener)
        let connection = try await connect(listener.localAddress.port)
        try await roundTrip(connection, "identity by SNI")
        await connection.abort()
        // An address sends no SNI: the handler has nothing for it and the handshake fails.
        var byAddress = pki.clientSecurity
        byAddress.serverName = nil
        await XCTAssertThrowsTransportError(.handshakeFailed) { try await self.connect(listener.localAddress.port, host: "127.0.0.1", byAddress) }
        _ = try await listener.failedEstablishments(within: .seconds(1))
        let error = await listener.lastEstablishmentError
        XCTAssertEqual(error?.code, .invalidCredentials)
        XCTAssertTrue(error?.message.contains("no identity") == true, "\(String(describing: error))")
        XCTAssertEqual(names.withLock { $0 }, ["localhost", nil])
        await listener.stop()
        echo.cancel()
    }
}
