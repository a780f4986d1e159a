import Foundation
import Synchronization
import XCTest
@testable import Taps

/// The RFC 8922 interfaces of TLS work per stream on tls-sctp, as on tls-tcp.
final class TLSSCTPSecurityTests: XCTestCase {
    let pki = TestPKI.shared

    /// IPK (client certificates), EXT (ALPN, SNI) and SSKE on every stream; KU on one stream leaves
    /// the others' keys alone; CT: closing one stream is a clean end for its peer only.
    func testInterfacesWorkPerStream() async throws {
        var server = pki.serverSecurity
        server.requireClientCertificate = true
        server.trustedRoots = .pem(file: pki.caPEM)
        server.applicationProtocols = ["taps/1"]
        let listener = try await TLSSCTP.listener(security: server) { $0.sctp.tlsHandshakes = .parallel }
        var security = pki.clientSecurity
        security.localIdentity = pki.identity("rsa")
        security.applicationProtocols = ["taps/1"]
        let client = TLSSCTP.client(listener.localAddress.port, security: security) { $0.sctp.tlsHandshakes = .parallel }
        let (clients, servers) = try await TLSSCTP.openStreams(3, from: client, to: listener)
        var exports: [[UInt8]] = []
        for index in 0..<3 {
            let serverSide = try XCTUnwrap(servers[index])
            let ours = try await securityDetails(of: clients[index])
            let theirs = try await securityDetails(of: serverSide)
            XCTAssertEqual(ours.applicationProtocol, "taps/1", "ALPN on stream \(index)")
            XCTAssertEqual(theirs.serverName, "localhost", "SNI on stream \(index)")
            XCTAssertEqual(theirs.peerCertificateSubject, "/CN=localhost", "the client's certificate on stream \(index)")
            let exported = try await clients[index].exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
            let serverExported = try await serverSide.exportKeyingMaterial(label: "EXPORTER-taps-test", length: 32)
            XCTAssertEqual(exported, serverExported, "both ends of stream \(index) export the same bytes")
            exports.append(exported)
        }
        XCTAssertEqual(Set(exports).count, 3, "each stream has its own TLS connection and keys")

        // KU on stream 1 only.
        let peerUpdates = Mutex<[Int: Int]>([:])
        for index in 0..<3 {
            try await XCTUnwrap(servers[index]).setEventHandler { event in
                if case .keysUpdated(byPeer: true) = event { peerUpdates.withLock { $0[index, default: 0] += 1 } }
            }
        }
        try await clients[1].updateKeys(requestPeerUpdate: true)
        for (index, connection) in clients.enumerated() { try await connection.send(TLSSCTP.greeting(index)) }
        for index in 0..<3 {
            // The KeyUpdate went before the greeting on stream 1, so it has been read once this arrived.
            let text = try await receiveExactly(try XCTUnwrap(servers[index]), count: 8)
            XCTAssertEqual(String(decoding: text, as: UTF8.self), TLSSCTP.greeting(index), "traffic goes on across the key update")
        }
        XCTAssertEqual(peerUpdates.withLock { $0 }, [1: 1], "only stream 1's keys were updated")

        // CT: stream 2 closes (close_notify); its peer sees a clean end, the others go on.
        let closing = try XCTUnwrap(servers[2])
        async let closed: Void = clients[2].close()
        let end = try await closing.receive()
        XCTAssertTrue(end.isFinal && end.content.isEmpty, "a clean end of stream 2")
        await closing.close()
        await closed
        try await clients[0].send("after")
        let after = try await receiveExactly(try XCTUnwrap(servers[0]), count: 5)
        XCTAssertEqual(String(decoding: after, as: UTF8.self), "after")
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// PSKI: an external PSK authenticates each stream; CM: a stream's session exported as bytes
    /// resumes in a fresh Preconnection's association.
    func testExternalPSKAndExportedSessionPerStream() async throws {
        let psk = PreSharedKey(identity: "taps-sctp", key: (0..<32).map { UInt8($0 &* 3 &+ 5) })
        var pskSecurity = SecurityParameters()
        pskSecurity.preSharedKey = psk
        let pskListener = try await TLSSCTP.listener(security: pskSecurity)
        let (pskClients, pskServers) = try await TLSSCTP.openStreams(
            2, from: TLSSCTP.client(pskListener.localAddress.port, security: pskSecurity) { $0.sctp.tlsHandshakes = .parallel },
            to: pskListener)
        for index in 0..<2 {
            let details = try await securityDetails(of: try XCTUnwrap(pskServers[index]))
            XCTAssertNil(details.peerCertificateSubject, "stream \(index) is authenticated by the PSK alone")
            XCTAssertEqual(details.protocolVersion, "TLSv1.3")
        }
        for connection in pskClients { await connection.abort() }
        await pskListener.stop()

        let listener = try await TLSSCTP.listener()
        let first = try await TLSSCTP.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        try await first.send(TLSSCTP.greeting(0))
        let accepted = try await TLSSCTP.acceptStreams(1, on: listener)
        try await XCTUnwrap(accepted[0]).send("ticket first")
        _ = try await receiveExactly(first, count: 12)
        let exported = try await first.exportSession()
        let session = try XCTUnwrap(exported, "a resumable session after the first exchange")
        await first.abort()
        var fresh = pki.clientSecurity
        fresh.resumptionSession = session
        let later = try await TLSSCTP.client(listener.localAddress.port, security: fresh).initiate(timeout: .seconds(10))
        let resumedLater = try await resumed(later)
        XCTAssertTrue(resumedLater, "an exported session resumes in another Preconnection's association")
        await later.abort()
        await listener.stop()
    }
}
