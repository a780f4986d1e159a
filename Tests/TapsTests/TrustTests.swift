import Foundation
import Synchronization
import XCTest
@testable import Taps

/// IV: the trust verifier (async, sees the chain and the default verdict, may reject with a
/// reason) on clients and servers, and SPKI pinning on top of it, against Taps peers and openssl.
final class TrustTests: XCTestCase {
    let pki = TestPKI.shared

    private func listen(_ security: SecurityParameters? = nil) async throws -> Listener {
        try await Preconnection(local: .loopback(), transport: .reliableMessage, security: security ?? pki.serverSecurity,
                                framer: LengthPrefixFramer()).listen()
    }

    private func connect(_ port: UInt16, _ security: SecurityParameters) async throws -> Connection {
        try await Preconnection(remote: .host("localhost", port: port), transport: .reliableMessage, security: security,
                                framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
    }

    func testVerifierSeesChainAndDefaultVerdictAndCanOverrule() async throws {
        let listener = try await listen()
        let echo = startEcho(listener)
        let seen = Mutex<[TrustChallenge]>([])
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: pki.otherCA)  // default validation fails: wrong CA
        security.trustVerifier = TrustVerifier { challenge in
            seen.withLock { $0.append(challenge) }
            try? await Task.sleep(for: .milliseconds(20))
            return .trust
        }
        let connection = try await connect(listener.localAddress.port, security)
        try await connection.send("trusted by the application")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "trusted by the application")
        let challenge = try XCTUnwrap(seen.withLock { $0.first })
        XCTAssertEqual(seen.withLock { $0.count }, 1)
        XCTAssertEqual(challenge.role, .client)
        XCTAssertEqual(challenge.serverName, "localhost")
        XCTAssertFalse(challenge.passesDefaultValidation)
        XCTAssertTrue(challenge.defaultValidationError?.contains("issuer certificate") == true, "\(String(describing: challenge.defaultValidationError))")
        let leaf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pki.path("server.der"))))
        XCTAssertEqual(challenge.peerChain.first, leaf)
        await connection.abort()
        await listener.stop()
        echo.cancel()
    }

    func testRejectionEndsTheHandshakeWithTheReasonAndAnAlert() async throws {
        let listener = try await listen()
        var security = pki.clientSecurity
        security.trustVerifier = TrustVerifier { challenge in
            XCTAssertTrue(challenge.passesDefaultValidation)
            try? await Task.sleep(for: .milliseconds(20))
            return .reject(reason: "not on the allow list")
        }
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { try await self.connect(listener.localAddress.port, security) }
        XCTAssertTrue(error?.message.contains("not on the allow list") == true, "\(String(describing: error))")
        // The server got our alert: its handshake failed too, and nothing was delivered.
        let failures = try await listener.failedEstablishments(within: .seconds(1))
        XCTAssertEqual(failures, 1)
        await listener.stop()
    }

    func testPinning() async throws {
        let listener = try await listen()
        let echo = startEcho(listener)
        let pin = try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.serverCert))
        let otherPin = try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.path("rsa.pem")))
        XCTAssertEqual(pin.count, 32)
        XCTAssertNotEqual(pin, otherPin)

        var pinned = pki.clientSecurity
        pinned.trustVerifier = .pinning(publicKeySHA256: [pin])
        let connection = try await connect(listener.localAddress.port, pinned)
        await connection.abort()

        var wrongPin = pki.clientSecurity
        wrongPin.trustVerifier = .pinning(publicKeySHA256: [otherPin])
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { try await self.connect(listener.localAddress.port, wrongPin) }
        XCTAssertTrue(error?.message.contains("pinned") == true, "\(String(describing: error))")

        // A pin can stand in for the CA when the application says so; by default the chain must also be valid.
        var pinInsteadOfCA = SecurityParameters.clientDefault
        pinInsteadOfCA.trustedRoots = .pem(file: pki.otherCA)
        pinInsteadOfCA.trustVerifier = .pinning(publicKeySHA256: [pin])
        await XCTAssertThrowsTransportError(.certificateRejected) { try await self.connect(listener.localAddress.port, pinInsteadOfCA) }
        pinInsteadOfCA.trustVerifier = .pinning(publicKeySHA256: [pin], requireValidChain: false)
        let pinnedOnly = try await connect(listener.localAddress.port, pinInsteadOfCA)
        await pinnedOnly.abort()
        await listener.stop()
        echo.cancel()
    }

    func testPinningAgainstOpenSSLServer() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, [])
        defer { server.terminate() }
        var security = pki.clientSecurity
        security.trustVerifier = .pinning(publicKeySHA256: [try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.serverCert))])
        let connection = try await Preconnection(remote: .host("localhost", port: port), security: security).initiate()
        try await connection.send("pinned s_server\n")
        let printed = await server.waitFor("pinned s_server")
        XCTAssertTrue(printed, server.text)
        await connection.abort()
    }

    func testServerVerifierDecidesOnClientCertificates() async throws {
        let verdicts = Mutex<[TrustChallenge]>([])
        var server = pki.serverSecurity
        server.trustedRoots = .pem(file: pki.caPEM)
        let allowed = try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.path("rsa.pem")))
        server.trustVerifier = TrustVerifier { challenge in
            verdicts.withLock { $0.append(challenge) }
            return challenge.leafPublicKeySHA256 == allowed ? .trust : .reject(reason: "unknown client key")
        }
        let listener = try await listen(server)
        let echo = startEcho(listener)

        var refused = pki.clientSecurity
        refused.localIdentity = pki.identity("ed25519")
        do {
            let connection = try await connect(listener.localAddress.port, refused)
            // TLS 1.3: the client may finish first; the server never delivers the connection.
            try await connection.send("x")
            _ = try await connection.receive()
            XCTFail("the server's verifier should have refused this client")
        } catch is TransportError {}
        for _ in 0..<100 where await listener.failedEstablishments == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let error = await listener.lastEstablishmentError
        XCTAssertEqual(error?.code, .certificateRejected)
        XCTAssertTrue(error?.message.contains("unknown client key") == true, "\(String(describing: error))")

        var accepted = pki.clientSecurity
        accepted.localIdentity = pki.identity("rsa")
        let connection = try await connect(listener.localAddress.port, accepted)
        try await connection.send("known client")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "known client")
        XCTAssertEqual(verdicts.withLock { $0.map(\.role) }, [.server, .server])
        XCTAssertTrue(verdicts.withLock { $0.allSatisfy(\.passesDefaultValidation) })
        await connection.abort()
        await listener.stop()
        echo.cancel()
    }
}
