import Foundation
import Synchronization
import XCTest
@testable import Taps

/// IV on dtls-chunk-sctp: a trust verifier (and pinning) decides on the peer of every DTLS 1.3 key
/// management connection, at both ends, before the association carries application data.
class DTLSChunkTrustTests: XCTestCase {
    /// The handshake method both ends run; a subclass runs the tests with TLS 1.3.
    class var ends: HandshakeEnds { HandshakeEnds(method: .dtls13) }

    static let pki = TestPKI.shared

    static func pin(_ certificate: String) throws -> [UInt8] {
        try TrustVerifier.publicKeySHA256(ofCertificate: .file(certificate))
    }

    func testPinningTheServersKeyAcceptsItAndAnotherPinRejectsIt() async throws {
        let listener = try await Self.ends.listener()
        let echo = startEcho(listener)
        var pinned = Self.ends.security(server: false)
        pinned.trustVerifier = .pinning(publicKeySHA256: [try Self.pin(Self.pki.serverCert)])
        let connection = try await Self.ends.client(listener.localAddress.port, pinned).initiate(timeout: .seconds(10))
        try await connection.send("pinned")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "pinned")
        await connection.close()

        var wrongPin = Self.ends.security(server: false)
        wrongPin.trustVerifier = .pinning(publicKeySHA256: [try Self.pin(Self.pki.path("rsa.pem"))])
        let error = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await Self.ends.client(listener.localAddress.port, wrongPin).initiate(timeout: .seconds(10))
        }
        XCTAssertTrue(error?.message.contains("pinned") == true, String(describing: error))
        XCTAssertTrue(error?.message.contains("trust verifier") == true, String(describing: error))
        await listener.stop()
        echo.cancel()
    }

    /// BoringSSL's validation verdict reaches the verifier instead of ending the handshake: a pin may
    /// stand in for the CA only when the application says so.
    func testAPinStandsInForTheCAOnlyWhenTheChainNeedNotValidate() async throws {
        let listener = try await Self.ends.listener()
        let echo = startEcho(listener)
        var pinInsteadOfCA = Self.ends.security(server: false, trusting: Self.pki.otherCA)
        pinInsteadOfCA.trustVerifier = .pinning(publicKeySHA256: [try Self.pin(Self.pki.serverCert)])
        let error = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await Self.ends.client(listener.localAddress.port, pinInsteadOfCA).initiate(timeout: .seconds(10))
        }
        XCTAssertTrue(error?.message.contains("certificate") == true, String(describing: error))

        pinInsteadOfCA.trustVerifier = .pinning(publicKeySHA256: [try Self.pin(Self.pki.serverCert)], requireValidChain: false)
        let connection = try await Self.ends.client(listener.localAddress.port, pinInsteadOfCA).initiate(timeout: .seconds(10))
        try await connection.send("pinned only")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "pinned only")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    /// The listener's verifier sees the client's chain as sent, with BoringSSL's verdict, and the
    /// client becomes ready only after it decided: the server sends PVALID on `.trust` alone.
    func testTheServersVerifierDecidesOnTheClientBeforeTheAssociationIsReady() async throws {
        let challenges = Mutex<[TrustChallenge]>([])
        let decided = Mutex(false)
        var server = Self.ends.security(server: true)
        server.trustVerifier = TrustVerifier { challenge in
            challenges.withLock { $0.append(challenge) }
            try? await Task.sleep(for: .milliseconds(300))
            decided.withLock { $0 = true }
            return .trust
        }
        let listener = try await Self.ends.listener(server)
        let echo = startEcho(listener)
        let connection = try await Self.ends.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        XCTAssertTrue(decided.withLock { $0 }, "the client was ready before the server's verifier decided")
        try await connection.send("verified")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "verified")
        let seen = challenges.withLock { $0 }
        XCTAssertEqual(seen.count, 1)
        let challenge = try XCTUnwrap(seen.first)
        XCTAssertEqual(challenge.role, .server)
        XCTAssertNil(challenge.defaultValidationError, "the client's certificate chains to the listener's roots")
        XCTAssertFalse(challenge.peerChain.isEmpty)
        XCTAssertEqual(challenge.leafPublicKeySHA256, try Self.pin(Self.pki.path("rsa.pem")), "the leaf is the client's certificate")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testARejectingServerVerifierEndsTheAssociationAndDeliversNothing() async throws {
        var server = Self.ends.security(server: true)
        server.trustVerifier = TrustVerifier { _ in .reject(reason: "not on the guest list") }
        let listener = try await Self.ends.listener(server)
        let delivered = Task { () -> Int in
            var count = 0
            for await _ in listener.connections { count += 1 }
            return count
        }
        do {
            let connection = try await Self.ends.client(listener.localAddress.port).initiate(timeout: .seconds(10))
            XCTFail("the client became ready although the server rejected it: \(connection)")
        } catch {
            // The listener's ABORT carries its reason to the client.
            XCTAssertTrue("\(error)".contains("not on the guest list"), "\(error)")
        }
        let failed = try await listener.failedEstablishments(within: .seconds(10))
        XCTAssertEqual(failed, 1, "the listener counts the rejected establishment")
        await listener.stop()
        let count = await delivered.value
        XCTAssertEqual(count, 0)
    }

    /// Every rekey's new connection goes to the verifier again; a rejection then ends the association.
    func testTheVerifierDecidesAgainOnEveryRekey() async throws {
        let calls = Mutex(0)
        let rejectFrom = Mutex(Int.max)
        var clientSecurity = DTLSChunkRekeyTests.security(server: false)
        clientSecurity.trustVerifier = TrustVerifier { challenge in
            let call = calls.withLock { count in
                count += 1
                return count
            }
            return call >= rejectFrom.withLock({ $0 }) ? .reject(reason: "no longer trusted") : .trust
        }
        let listener = try await Self.ends.listener(DTLSChunkRekeyTests.security(server: true))
        let client = try await Self.ends.client(listener.localAddress.port, clientSecurity).initiate(timeout: .seconds(10))
        let server = try await listener.firstConnection()
        XCTAssertEqual(calls.withLock { $0 }, 1)
        try await client.updateKeys()
        let after = try await DTLSChunkRekeyTests.waitFor(client) { $0.sendEpoch == 4 }
        XCTAssertEqual(after.sendEpoch, 4)
        XCTAssertEqual(calls.withLock { $0 }, 2, "the rekey's certificate went to the verifier")
        try await client.send("after the rekey")
        let message = try await server.receive()
        XCTAssertEqual(message.text, "after the rekey")

        rejectFrom.withLock { $0 = 3 }
        try await client.updateKeys()
        let watchdog = abort(client, after: .seconds(10))  // an association that goes on fails the test, not hangs it
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { _ = try await client.receive() }
        watchdog.cancel()
        XCTAssertTrue(error?.message.contains("no longer trusted") == true, String(describing: error))
        let progress = try? await DTLSChunkRekeyTests.progress(client)
        XCTAssertNotEqual(progress?.sendEpoch, 5, "the rejected connection's keys were never used")
        await listener.stop()
    }
}

/// The same with TLS 1.3 key management (draft-porfiri "Authentication and Identity"). (Test
/// discovery on Linux finds only the methods a class declares itself.)
final class DTLSChunkTLS13TrustTests: DTLSChunkTrustTests {
    override class var ends: HandshakeEnds { HandshakeEnds(method: .tls13) }
    override func testPinningTheServersKeyAcceptsItAndAnotherPinRejectsIt() async throws {
        try await super.testPinningTheServersKeyAcceptsItAndAnotherPinRejectsIt()
    }
    override func testAPinStandsInForTheCAOnlyWhenTheChainNeedNotValidate() async throws {
        try await super.testAPinStandsInForTheCAOnlyWhenTheChainNeedNotValidate()
    }
    override func testTheServersVerifierDecidesOnTheClientBeforeTheAssociationIsReady() async throws {
        try await super.testTheServersVerifierDecidesOnTheClientBeforeTheAssociationIsReady()
    }
    override func testARejectingServerVerifierEndsTheAssociationAndDeliversNothing() async throws {
        try await super.testARejectingServerVerifierEndsTheAssociationAndDeliversNothing()
    }
    override func testTheVerifierDecidesAgainOnEveryRekey() async throws {
        try await super.testTheVerifierDecidesAgainOnEveryRekey()
    }
}
