import Foundation
import XCTest
@testable import Taps

/// dtls-chunk-sctp keyed by DTLS 1.3 handshakes (draft-westerlund) over loopback: certificates both
/// ways, the handshake in PPID 4242 messages, the chunk's keys from the exporter, PVALID.
final class DTLSChunkDTLS13Tests: XCTestCase {
    static let pki = TestPKI.shared

    /// The listener: the test server certificate; the client: the test RSA certificate. Each trusts
    /// `trusting` (the test CA unless said otherwise).
    static func security(server: Bool, trusting roots: String = pki.caPEM) -> SecurityParameters {
        var security = SecurityParameters()
        security.localIdentity = server ? .files(certificate: pki.serverCert, key: pki.serverKey) : pki.identity("rsa")
        security.trustedRoots = .pem(file: roots)
        return security
    }

    static func listener(_ security: SecurityParameters = security(server: true)) async throws -> Listener {
        var server = Preconnection(local: .loopback(), transport: DTLSChunkSCTPTests.transport(), security: security)
        server.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        return try await server.listen()
    }

    static func client(_ port: UInt16, _ security: SecurityParameters = security(server: false)) -> Preconnection {
        var client = Preconnection(remote: .loopback(port: port), transport: DTLSChunkSCTPTests.transport(), security: security)
        client.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        client.lossyPath = LossyPath()
        return client
    }

    /// A client whose every written datagram, from its INIT on, goes to the returned log.
    static func clientLoggingWrites(_ port: UInt16, _ security: SecurityParameters = security(server: false)) -> (Preconnection, WireLog) {
        let wire = WireLog()
        var client = client(port, security)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            if outgoing { wire.append(datagram) }
            return [datagram]
        }
        client.lossyPath = lossy
        return (client, wire)
    }

    func testAMutuallyAuthenticatedHandshakeKeysTheChunkAndNothingGoesInClear() async throws {
        let listener = try await Self.listener()
        let echo = startEcho(listener)
        let (client, wire) = Self.clientLoggingWrites(listener.localAddress.port)
        let first = try await client.initiate(timeout: .seconds(10))
        let handshakeDatagrams = wire.count
        let maybeStatus = await first.dtlsChunkStatus
        let status = try XCTUnwrap(maybeStatus)
        XCTAssertEqual(status.agreement?.method, .dtls13)
        XCTAssertEqual(status.agreement?.role, .client)
        XCTAssertTrue(status.requiresProtection)
        let maybeDetails = await first.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertTrue(details.protocolVersion.contains("DTLS 1.3 (KMId 193)"), details.protocolVersion)
        XCTAssertTrue(DTLSChunkCipherSuite.allCases.map(\.description).contains(details.cipherSuite))
        XCTAssertEqual(details.peerCertificateSubject, "/CN=localhost", "the server's certificate")
        let second = try await first.clone()
        for (index, connection) in [first, second].enumerated() {
            for size in [10, 20_000] {
                let payload = Array("secret-\(index)-".utf8) + [UInt8](repeating: UInt8(index), count: size)
                try await connection.send(payload)
                let reply = try await connection.receive()
                XCTAssertEqual(reply.content, payload)
            }
        }
        XCTAssertFalse(wire.contains(Array("secret-".utf8)), "no application byte in clear, from the INIT on")
        XCTAssertGreaterThan(handshakeDatagrams, 3, "INIT, COOKIE ECHO and the DTLS handshake's messages")
        XCTAssertTrue(wire.all(after: handshakeDatagrams) { $0.count > 12 && $0[12] == 0x41 }, "after the handshake every packet is one DTLS chunk")
        await first.close()
        await second.close()
        await listener.stop()
        echo.cancel()
    }

    /// Each end reports who the peer's certificate names (SecurityDetails.peerCertificateSubject),
    /// from the DTLS 1.3 key management's handshake.
    /// The DTLS 1.3 method's KMId is configurable (the draft's 16-bit identifier does not fit): with
    /// 250 at both ends the INIT offers 250 (and not 193) and the method is agreed under it.
    func testAnotherKMIdForDTLS13IsOfferedAndAgreedWhenBothEndsUseIt() async throws {
        let kmid = DTLSKeyManagementMethod(rawValue: 250)
        var server = Self.security(server: true), clientSecurity = Self.security(server: false)
        server.dtlsChunkDTLS13KeyManagementID = kmid
        clientSecurity.dtlsChunkDTLS13KeyManagementID = kmid
        clientSecurity.dtlsChunkKeyManagement = [.dtls13]  // the method by its usual name
        let listener = try await Self.listener(server)
        let echo = startEcho(listener)
        let (client, wire) = Self.clientLoggingWrites(listener.localAddress.port, clientSecurity)
        let connection = try await client.initiate(timeout: .seconds(10))
        // The INIT's DTLS Key Management Parameter: type 0x8006, length 10, tie breaker, flags, one KMId.
        let offered = wire.all { datagram in
            guard let start = datagram.indices.first(where: { Array(datagram[$0...].prefix(4)) == [0x80, 0x06, 0x00, 0x0A] }) else { return true }
            return datagram.count > start + 9 && datagram[start + 9] == 250
        }
        XCTAssertTrue(wire.contains([0x80, 0x06, 0x00, 0x0A]), "the INIT carries the parameter")
        XCTAssertTrue(offered, "the INIT offers KMId 250")
        let maybeStatus = await connection.dtlsChunkStatus
        let status = try XCTUnwrap(maybeStatus)
        XCTAssertEqual(status.agreement?.method, kmid)
        try await connection.send("under KMId 250")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "under KMId 250")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    /// Ends that give the DTLS 1.3 method different KMIds have no method in common: establishment
    /// fails with a typed error naming that; a KMId that names another method rules the stack out.
    func testDifferentDTLS13KMIdsHaveNoMethodInCommon() async throws {
        let listener = try await Self.listener()
        var clientSecurity = Self.security(server: false)
        clientSecurity.dtlsChunkDTLS13KeyManagementID = DTLSKeyManagementMethod(rawValue: 250)
        clientSecurity.dtlsChunkKeyManagement = [.dtls13]  // not the TLS 1.3 method, which both ends have
        do {
            _ = try await Self.client(listener.localAddress.port, clientSecurity).initiate(timeout: .seconds(10))
            XCTFail("ends with different KMIds for DTLS 1.3 established an association")
        } catch let error as TransportError {
            XCTAssertTrue(error.message.contains("in common"), "\(error)")
        }
        await listener.stop()
        var clashing = Self.security(server: false)
        clashing.dtlsChunkDTLS13KeyManagementID = .tls13
        let refusal = await XCTAssertThrowsTransportError(.noCandidate) {
            try await Self.client(listener.localAddress.port, clashing).initiate(timeout: .seconds(5))
        }
        XCTAssertTrue(refusal?.message.contains("names another method") ?? false, "\(String(describing: refusal))")
    }

    func testEachEndReportsThePeersCertificateSubject() async throws {
        let listener = try await Self.listener()
        var clientSecurity = Self.security(server: false)
        clientSecurity.localIdentity = Self.pki.identity("renamed")  // CN=renamed.example, from the test CA
        let client = try await Self.client(listener.localAddress.port, clientSecurity).initiate(timeout: .seconds(10))
        try await client.send("hello")
        let accepted = try await listener.firstConnection()
        let serverSide = await accepted.securityDetails?.peerCertificateSubject
        let clientSide = await client.securityDetails?.peerCertificateSubject
        XCTAssertEqual(serverSide, "/CN=renamed.example", "the client's certificate")
        XCTAssertEqual(clientSide, "/CN=localhost", "the server's certificate")
        await client.close()
        await accepted.close()
        await listener.stop()
    }

    /// Downgrade prevention: a man in the middle changes the client's 0x8006 parameter (only its tie
    /// breaker, which the roles here do not depend on). The handshake itself succeeds, but the two
    /// ends export keys from different parameters, so nothing protected ever opens: the association
    /// fails and carries no application data.
    func testAChangedParameterInTheInitMakesTheKeysDisagreeAndEstablishmentFail() async throws {
        let listener = try await Self.listener()
        var client = Self.client(listener.localAddress.port)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard outgoing, datagram.count > 12, datagram[12] == 1 else { return [datagram] }
            return [DTLSChunkAttackTests.rewritingParameter(datagram) { parameter in
                var changed = parameter
                changed.tieBreaker ^= 0x5A5A
                return changed
            }]
        }
        client.lossyPath = lossy
        let started = ContinuousClock.now
        let error = await XCTAssertThrowsTransportError(.timedOut) { try await client.initiate(timeout: .seconds(15)) }
        XCTAssertNotNil(error)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(12))
        await listener.stop()
    }

    func testTheHandshakeAndTwoMegabytesGetThroughALossyPath() async throws {
        let listener = try await Self.listener()
        var client = Self.client(listener.localAddress.port)
        client.transport.sctp.retransmissionTimeoutMinimum = .milliseconds(20)
        client.transport.sctp.retransmissionTimeoutInitial = .milliseconds(100)
        client.transport.sctp.retransmissionTimeoutMaximum = .milliseconds(400)
        client.lossyPath = LossyPath(lossRate: 0.05, reorderRate: 0.05, duplicateRate: 0.01, corruptionRate: 0.01, seed: 5)
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: client, to: listener)
        let total = 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let received = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<2, total: total)
        try await sending
        XCTAssertEqual(received, [total, total])
        let status = await clients[0].dtlsChunkStatus
        XCTAssertEqual(status?.agreement?.method, .dtls13)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// With pre-shared keys configured beside the identity, DTLS 1.3 is agreed, and only its keys go in.
    func testWithBothMethodsConfiguredDTLS13IsAgreedAndItsKeysAloneAreUsed() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        var server = Self.security(server: true), client = Self.security(server: false)
        server.dtlsChunkKeys = keys
        client.dtlsChunkKeys = keys
        let listener = try await Self.listener(server)
        let echo = startEcho(listener)
        let connection = try await Self.client(listener.localAddress.port, client).initiate(timeout: .seconds(10))
        try await connection.send("both offered")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "both offered")
        let status = await connection.dtlsChunkStatus
        XCTAssertEqual(status?.agreement?.method, .dtls13)
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testACertificateFromAnotherCAFailsTheHandshakeAndNoConnectionIsDelivered() async throws {
        // The client trusts only the other CA: the listener's certificate does not validate.
        let listener = try await Self.listener()
        let delivered = Task { () -> Int in
            var count = 0
            for await _ in listener.connections { count += 1 }
            return count
        }
        let client = Self.client(listener.localAddress.port, Self.security(server: false, trusting: Self.pki.otherCA))
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertNotNil(error)
        let failed = try await listener.failedEstablishments(within: .seconds(10))
        XCTAssertEqual(failed, 1, "the listener's end failed too")
        await listener.stop()
        let count = await delivered.value
        XCTAssertEqual(count, 0)
    }
}

/// dtls-chunk-sctp ends that both offer one handshake method only, for tests that run under each.
struct HandshakeEnds: Sendable {
    var method: DTLSKeyManagementMethod

    func security(server: Bool, trusting roots: String = TestPKI.shared.caPEM) -> SecurityParameters {
        var security = DTLSChunkDTLS13Tests.security(server: server, trusting: roots)
        security.dtlsChunkKeyManagement = [method]
        return security
    }

    func listener(_ security: SecurityParameters? = nil) async throws -> Listener {
        try await DTLSChunkDTLS13Tests.listener(security ?? self.security(server: true))
    }

    func client(_ port: UInt16, _ security: SecurityParameters? = nil) -> Preconnection {
        DTLSChunkDTLS13Tests.client(port, security ?? self.security(server: false))
    }
}
