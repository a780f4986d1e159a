import Foundation
import XCTest
@testable import Taps

/// PSKI: external pre-shared keys on TLS 1.3, TLS 1.2 and DTLS 1.2, between Taps endpoints and
/// against openssl s_server / s_client.
final class PSKTests: XCTestCase {
    static let key: [UInt8] = (0..<32).map { UInt8($0 &* 7 &+ 1) }
    static let keyHex = key.map { String(format: "%02x", $0) }.joined()
    static let psk = PreSharedKey(identity: "taps-client-1", key: key)

    private func security(_ psk: PreSharedKey? = PSKTests.psk, versions: Set<SecurityParameters.ProtocolVersion>? = nil) -> SecurityParameters {
        var security = SecurityParameters()
        security.preSharedKey = psk
        if let versions { security.allowedVersions = versions }
        return security
    }

    /// A PSK-only listener (no certificate) and a connected client, with the accepted connection.
    private func pair(server: SecurityParameters, client: SecurityParameters, transport: TransportProperties = .reliableMessage)
        async throws -> (Listener, Connection, Connection) {
        let framer: (any MessageFramer)? = transport.preserveMsgBoundaries == .require ? LengthPrefixFramer() : nil
        let listener = try await Preconnection(local: .loopback(), transport: transport, security: server, framer: framer).listen()
        let connection = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: transport,
                                                 security: client, framer: framer).initiate()
        let accepted = try await listener.firstConnection()
        return (listener, connection, accepted)
    }

    func testTLS13ExternalPSKWithoutCertificates() async throws {
        let (listener, client, server) = try await pair(server: security(), client: security())
        let maybeDetails = await client.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertEqual(details.protocolVersion, "TLSv1.3")
        XCTAssertTrue(details.cipherSuite.hasSuffix("_SHA256"), "a suite with the PSK's hash: \(details.cipherSuite)")
        XCTAssertNil(details.peerCertificateSubject, "a PSK handshake authenticates without certificates")
        XCTAssertNotNil(details.group, "psk_dhe_ke by default: an (EC)DHE group is negotiated")
        XCTAssertFalse(details.resumed, "an external PSK is not a resumption")
        try await client.send("over a PSK")
        let received = try await server.receive()
        XCTAssertEqual(received.text, "over a PSK")
        // Each graceful close waits for the other end's close_notify.
        async let serverClosed: Void = server.close()
        await client.close()
        await serverClosed
        await listener.stop()
    }

    func testSHA384KeySelectsTheSHA384Suite() async throws {
        var psk = Self.psk
        psk.hash = .sha384
        let (listener, client, server) = try await pair(server: security(psk), client: security(psk))
        let suite = await client.securityDetails?.cipherSuite
        XCTAssertEqual(suite, "TLS_AES_256_GCM_SHA384")
        await client.abort()
        await server.abort()
        await listener.stop()
    }

    func testWrongKeyEndsEstablishmentWithNoData() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: security(),
                                               framer: LengthPrefixFramer()).listen()
        var wrong = Self.psk
        wrong.key[0] ^= 0xff
        await XCTAssertThrowsTransportError(.handshakeFailed) {
            try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableMessage,
                                    security: self.security(wrong), framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
        }
        // The server counted a failed establishment and delivered no connection.
        let failures = try await listener.failedEstablishments(within: .seconds(1))
        XCTAssertEqual(failures, 1)
        await listener.stop()
        var incoming = listener.connections.makeAsyncIterator()
        let delivered = await incoming.next()
        XCTAssertNil(delivered)
    }

    func testUnknownIdentityIsRejected() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: security(),
                                               framer: LengthPrefixFramer()).listen()
        await XCTAssertThrowsTransportError(.handshakeFailed) {
            try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableMessage,
                                    security: self.security(PreSharedKey(identity: "someone-else", key: Self.key)),
                                    framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
        }
        await listener.stop()
    }

    func testTLS12PSKSuiteKeepsForwardSecrecy() async throws {
        let (listener, client, server) = try await pair(server: security(), client: security(versions: [.tls12]))
        let maybeDetails = await client.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertEqual(details.protocolVersion, "TLSv1.2")
        XCTAssertEqual(details.cipherSuite, "ECDHE-PSK-CHACHA20-POLY1305")
        try await exchangeAndEnd("over TLS 1.2 PSK", client, server, listener)
    }

    private func exchangeAndEnd(_ text: String, _ client: Connection, _ server: Connection, _ listener: Listener) async throws {
        try await client.send(text)
        let received = try await server.receive()
        XCTAssertEqual(received.text, text)
        await client.abort()
        await server.abort()
        await listener.stop()
    }

    func testPlainPSKSuitesOnlyWhenAllowed() async throws {
        // A client that offers only plain PSK suites finds no common suite with a default server.
        var client = security(versions: [.tls12])
        client.algorithms.tls12Ciphers = ["PSK-AES128-GCM-SHA256"]
        try await assertHandshakeFails(server: security(), client: client)
        var allowing = Self.psk
        allowing.allowsKeyExchangeWithoutDHE = true
        var server = security(allowing)
        server.allowedVersions = [.tls12]
        let (second, connection, accepted) = try await pair(server: server, client: client)
        let suite = await connection.securityDetails?.cipherSuite
        XCTAssertEqual(suite, "PSK-AES128-GCM-SHA256")
        await connection.abort()
        await accepted.abort()
        await second.stop()
    }

    func testDTLSWithPSK() async throws {
        let (listener, client, server) = try await pair(server: security(), client: security(), transport: .unreliableDatagram)
        XCTAssertEqual(client.stack.name, "dtls-udp")
        let suite = await client.securityDetails?.cipherSuite
        XCTAssertEqual(suite, "ECDHE-PSK-CHACHA20-POLY1305")
        try await exchangeAndEnd("datagram under a PSK", client, server, listener)
    }

    func testShortKeyAndBadIdentityAreRefusedBeforeAnyPacket() async throws {
        let port = try await freePort()  // nothing listens: a packet sent would end in connectionRefused
        let short = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await Preconnection(remote: .host("127.0.0.1", port: port),
                                    security: self.security(PreSharedKey(identity: "id", key: Array(repeating: 1, count: 15)))).initiate()
        }
        XCTAssertTrue(short?.message.contains("preSharedKey.key") == true, "\(String(describing: short))")
        let empty = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await Preconnection(remote: .host("127.0.0.1", port: port),
                                    security: self.security(PreSharedKey(identity: "", key: Self.key))).initiate()
        }
        XCTAssertTrue(empty?.message.contains("preSharedKey.identity") == true, "\(String(describing: empty))")
    }

    func testAConfiguredPSKRequiresPSKI() throws {
        let withoutPSKI = ProtocolStack(name: "tls-no-pski", layers: [.tcp, .tls], features: ProtocolStack.tlsTCP.features,
                                        security: SecurityProtocol(name: "TLS", versions: [.tls13], interfaces: [.identitiesAndPrivateKeys]),
                                        roles: [.initiate])
        var preconnection = Preconnection(remote: .host("localhost", port: 1), security: security())
        preconnection.registry = StackRegistry(stacks: [withoutPSKI, .tlsTCP])
        let report = preconnection.candidateStacks(for: .initiate)
        XCTAssertEqual(report.filter(\.qualifies).map(\.stack.name), ["tls-tcp"], report.table)
        XCTAssertTrue(report[0].reasons.joined().contains("PSKI"), report.table)
        var prohibited = security()
        prohibited.prohibit(.preSharedKeyImport)
        let refused = Preconnection(remote: .host("localhost", port: 1), security: prohibited).candidateStacks(for: .initiate)
        XCTAssertFalse(refused.contains { $0.qualifies }, refused.table)
    }

    // MARK: Against openssl

    func testClientAgainstOpenSSLServerWithPSK() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-psk", Self.keyHex, "-psk_identity", "taps-client-1"],
                                                          withIdentity: false)
        defer { server.terminate() }
        let client = try await Preconnection(remote: .host("localhost", port: port), security: security()).initiate()
        let maybeDetails = await client.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertEqual(details.protocolVersion, "TLSv1.3")
        try await client.send("hello s_server over a PSK\n")
        let printed = await server.waitFor("hello s_server over a PSK")
        XCTAssertTrue(printed, server.text)
        await client.abort()
    }

    func testOpenSSLClientWithPSKToEchoServer() async throws {
        for version in ["-tls1_3", "-tls1_2"] {
            let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--psk-identity", "taps-client-1",
                                                                    "--psk-hex", Self.keyHex, "--count", "1"])
            defer { server.terminate() }
            let client = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", version,
                                                               "-psk", Self.keyHex, "-psk_identity", "taps-client-1", "-quiet"])
            defer { client.terminate() }
            client.write("ping under a PSK\n")
            let echoed = await client.waitFor("ping under a PSK")
            XCTAssertTrue(echoed, "\(version): \(client.text) / \(server.text)")
            let printed = await server.waitFor("cipher: ")
            XCTAssertTrue(printed, server.text)
        }
    }
}

extension PSKTests {
    /// psk_ke: with groups that cannot meet, only a PSK without (EC)DHE can complete the handshake,
    /// and only when both ends allow it.
    func testKeyExchangeWithoutDHEOnlyWhenAllowed() async throws {
        var server = security()
        server.algorithms.groups = ["P-384"]
        var client = security()
        client.algorithms.groups = ["X25519"]
        try await assertHandshakeFails(server: server, client: client)
        var allowing = Self.psk
        allowing.allowsKeyExchangeWithoutDHE = true
        server.preSharedKey = allowing
        client.preSharedKey = allowing
        let (second, connection, accepted) = try await pair(server: server, client: client)
        let details = await connection.securityDetails
        XCTAssertEqual(details?.protocolVersion, "TLSv1.3")
        XCTAssertNil(details?.group, "psk_ke: no key-exchange group")
        await connection.abort()
        await accepted.abort()
        await second.stop()
    }
}

extension PSKTests {
    /// A client with `client` fails its handshake (handshakeFailed) with a listener using `server`.
    func assertHandshakeFails(server: SecurityParameters, client: SecurityParameters,
                              file: StaticString = #filePath, line: UInt = #line) async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: server,
                                               framer: LengthPrefixFramer()).listen()
        await XCTAssertThrowsTransportError(.handshakeFailed, {
            try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableMessage,
                                    security: client, framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
        }, file: file, line: line)
        await listener.stop()
    }
}
