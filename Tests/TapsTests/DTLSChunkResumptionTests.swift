import Foundation
import XCTest
@testable import Taps

/// CM on dtls-chunk-sctp: the DTLS 1.3 key management's first handshake of a later association to
/// the same peer resumes the session of an earlier one (a DTLS 1.3 ticket, psk_dhe_ke); rekeys
/// never resume, so each verifies the peer's certificate again.
class DTLSChunkResumptionTests: XCTestCase {
    /// The handshake method both ends run; a subclass runs the tests with TLS 1.3.
    class var ends: HandshakeEnds { HandshakeEnds(method: .dtls13) }

    class func rekeyingOnDemand(server: Bool) -> SecurityParameters {
        var security = ends.security(server: server)
        security.dtlsChunkRekey = .onDemand
        return security
    }

    /// An association to `listener`: its resumed flag at both ends, after one echoed message.
    static func associate(_ client: Preconnection, with listener: Listener) async throws -> (client: Connection, server: Connection, resumed: (Bool, Bool)) {
        let connection = try await client.initiate(timeout: .seconds(10))
        try await connection.send("hello")
        let server = try await listener.firstConnection()
        let message = try await server.receive()
        XCTAssertEqual(message.text, "hello")
        let clientDetails = await connection.securityDetails
        let serverDetails = await server.securityDetails
        return (connection, server, (try XCTUnwrap(clientDetails).resumed, try XCTUnwrap(serverDetails).resumed))
    }

    func testALaterAssociationResumesAndItsRekeysDoFullHandshakes() async throws {
        let listener = try await Self.ends.listener(Self.rekeyingOnDemand(server: true))
        let client = Self.ends.client(listener.localAddress.port, Self.rekeyingOnDemand(server: false))
        let first = try await Self.associate(client, with: listener)
        XCTAssertFalse(first.resumed.0)
        XCTAssertFalse(first.resumed.1)
        let firstKey = try await first.server.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 16)
        // The ticket follows the handshake; the first exchange carried it.
        await first.client.close()

        let second = try await Self.associate(client, with: listener)
        XCTAssertTrue(second.resumed.0, "the client resumed")
        XCTAssertTrue(second.resumed.1, "the listener resumed")
        let subject = await second.client.securityDetails?.peerCertificateSubject
        XCTAssertEqual(subject, "/CN=localhost", "the resumed session still names the server's certificate")
        let secondKey = try await second.server.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 16)
        XCTAssertNotEqual(firstKey, secondKey, "a resumption derives fresh secrets")

        try await second.client.updateKeys()
        let after = try await DTLSChunkRekeyTests.waitFor(second.client) { $0.sendEpoch == 4 }
        XCTAssertEqual(after.sendEpoch, 4)
        let rekeyedFully = try await second.client.loop.submit {
            second.client.assumeIsolated { connection -> Bool? in
                guard let association = connection.layer.layerChain.lazy.compactMap({ ($0 as? SCTPStreamLayer)?.association }).first else { return nil }
                return association.keyManagement?.currentConnectionResumed == false
            }
        }
        XCTAssertEqual(rekeyedFully, true, "the rekey did a full handshake")
        try await second.client.send("after the rekey")
        let message = try await second.server.receive()
        XCTAssertEqual(message.text, "after the rekey")
        await second.client.close()
        await listener.stop()
    }

    /// A listener that issues no tickets leaves every association to a full handshake.
    func testWithoutTicketsNothingResumes() async throws {
        var server = Self.ends.security(server: true)
        server.sessionTickets = false
        let listener = try await Self.ends.listener(server)
        let client = Self.ends.client(listener.localAddress.port)
        for _ in 0..<2 {
            let association = try await Self.associate(client, with: listener)
            XCTAssertFalse(association.resumed.0)
            XCTAssertFalse(association.resumed.1)
            await association.client.close()
        }
        await listener.stop()
    }

    /// A cache the application shares resumes across Preconnections; emptied, it resumes nothing.
    func testASharedCacheResumesAcrossPreconnectionsUntilEmptied() async throws {
        let listener = try await Self.ends.listener()
        let cache = TLSSessionCache()
        var security = Self.ends.security(server: false)
        security.sessionCache = cache
        let first = try await Self.associate(Self.ends.client(listener.localAddress.port, security), with: listener)
        XCTAssertFalse(first.resumed.0)
        await first.client.close()
        XCTAssertEqual(cache.count, 1, "the listener's ticket is kept under its address")

        let second = try await Self.associate(Self.ends.client(listener.localAddress.port, security), with: listener)
        XCTAssertTrue(second.resumed.0)
        await second.client.close()

        cache.removeAll()
        let third = try await Self.associate(Self.ends.client(listener.localAddress.port, security), with: listener)
        XCTAssertFalse(third.resumed.0)
        await third.client.close()
        await listener.stop()
    }

    /// A session exported as bytes resumes from another Preconnection with a cache of its own, as
    /// after a process restart; the same bytes given to a TLS stack are not taken for a TLS session.
    func testAnExportedSessionResumesFromAnotherPreconnection() async throws {
        let listener = try await Self.ends.listener()
        let first = try await Self.associate(Self.ends.client(listener.localAddress.port), with: listener)
        XCTAssertFalse(first.resumed.0)
        let maybeExported = try await first.client.exportSession()
        let exported = try XCTUnwrap(maybeExported, "the listener's ticket arrived with the first exchange")
        await first.client.close()

        var security = Self.ends.security(server: false)
        security.resumptionSession = exported
        let second = try await Self.associate(Self.ends.client(listener.localAddress.port, security), with: listener)
        XCTAssertTrue(second.resumed.0, "the imported session resumed")
        XCTAssertTrue(second.resumed.1)
        await second.client.close()
        await listener.stop()

        var corrupt = Self.ends.security(server: false)
        corrupt.resumptionSession = Array(exported.prefix(HandshakeKeyManagement.exportedSessionPrefix.count + 20))
        let refused = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await Self.ends.client(9, corrupt).initiate(timeout: .seconds(5))
        }
        XCTAssertTrue(refused?.message.contains("resumptionSession") == true, String(describing: refused))

        var tls = TestPKI.shared.clientSecurity
        tls.resumptionSession = exported
        // Taken for a TLS session, the bytes would fail the initiate with invalidArgument.
        let tlsServer = try await Preconnection(local: .loopback(), security: TestPKI.shared.serverSecurity).listen()
        let echo = startEcho(tlsServer)
        let connection = try await Preconnection(remote: .loopback(port: tlsServer.localAddress.port), security: tls).initiate(timeout: .seconds(10))
        let details = await connection.securityDetails
        XCTAssertEqual(details?.resumed, false)
        await connection.close()
        await tlsServer.stop()
        echo.cancel()
    }
}

/// CM with TLS 1.3 key management: TLS 1.3 tickets of the system OpenSSL in the same session cache.
/// Its sessions are not exported as bytes. (Test discovery on Linux finds only the methods a class
/// declares itself.)
final class DTLSChunkTLS13ResumptionTests: DTLSChunkResumptionTests {
    override class var ends: HandshakeEnds { HandshakeEnds(method: .tls13) }
    override func testALaterAssociationResumesAndItsRekeysDoFullHandshakes() async throws {
        try await super.testALaterAssociationResumesAndItsRekeysDoFullHandshakes()
    }
    override func testWithoutTicketsNothingResumes() async throws {
        try await super.testWithoutTicketsNothingResumes()
    }
    override func testASharedCacheResumesAcrossPreconnectionsUntilEmptied() async throws {
        try await super.testASharedCacheResumesAcrossPreconnectionsUntilEmptied()
    }
    override func testAnExportedSessionResumesFromAnotherPreconnection() async throws {
        let listener = try await Self.ends.listener()
        let first = try await Self.associate(Self.ends.client(listener.localAddress.port), with: listener)
        await XCTAssertThrowsTransportError(.notSupported) { _ = try await first.client.exportSession() }
        await first.client.close()
        await listener.stop()
    }
}
