import CoreMetrics
import Foundation
import MetricsTestKit
import XCTest
@testable import Taps

/// swift-metrics: a known exchange, counted by a test backend. Each side has its own factory, bound
/// with `withMetricsFactory` around `listen()` / `initiate()`, so the counts are exactly that side's.
final class MetricsTests: XCTestCase {
    let pki = TestPKI.shared

    private func counter(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)]) -> Int64 {
        metrics.counters(label: label, dimensions: dimensions).reduce(0) { $0 + $1.totalValue }
    }

    private func meter(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)]) -> Double {
        metrics.meters(label: label, dimensions: dimensions).first?.lastValue ?? 0
    }

    /// Waits until `condition` holds (counts the peer makes arrive a little after the local ones).
    private func eventually(_ what: String, within seconds: Double = 5, _ condition: () -> Bool) async {
        let deadline = Date().addingTimeInterval(seconds)
        var held = condition()
        while !held && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(10))
            held = condition()
        }
        XCTAssertTrue(held, what)
    }

    func testATLSExchangeIsCountedOnBothSides() async throws {
        let server = TestMetrics(), client = TestMetrics()
        var listening = Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity, framer: LengthPrefixFramer())
        listening.registry = StackRegistry(stacks: [.tlsTCP])
        let listener = try await withMetricsFactory(server) { try await listening.listen() }
        let echo = startEcho(listener)
        var initiating = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableMessage,
                                       security: pki.clientSecurity, framer: LengthPrefixFramer())
        initiating.registry = StackRegistry(stacks: [.tlsTCP])
        let connection = try await withMetricsFactory(client) { try await initiating.initiate() }
        let tls = [("stack", "tls-tcp")]
        XCTAssertEqual(meter(client, "taps_connections", tls + [("state", "established")]), 1)
        for index in 0..<5 {
            try await connection.send([UInt8](repeating: UInt8(index), count: 1000))
            _ = try await connection.receive()
        }
        let clone = try await connection.clone()  // resumes the session; counted in the client's factory too
        try await clone.send([UInt8](repeating: 9, count: 100))
        _ = try await clone.receive()
        XCTAssertEqual(meter(client, "taps_connections", tls + [("state", "established")]), 2)

        for metrics in [client, server] {
            let side = metrics === client ? "client" : "server"
            await eventually("\(side): six messages each way") {
                counter(metrics, "taps_messages_total", tls + [("direction", "received")]) == 6
            }
            XCTAssertEqual(counter(metrics, "taps_messages_total", tls + [("direction", "sent")]), 6, side)
            XCTAssertEqual(counter(metrics, "taps_bytes_total", tls + [("direction", "sent")]), 5_100, side)
            XCTAssertEqual(counter(metrics, "taps_bytes_total", tls + [("direction", "received")]), 5_100, side)
            XCTAssertEqual(counter(metrics, "taps_handshakes_total", tls + [("result", "full")]), 1, side)
            XCTAssertEqual(counter(metrics, "taps_handshakes_total", tls + [("result", "resumed")]), 1, side)
            XCTAssertEqual(counter(metrics, "taps_handshakes_total", tls + [("result", "failed")]), 0, side)
            XCTAssertEqual(counter(metrics, "taps_connections_opened_total", tls), 2, side)
        }
        await clone.close()
        await connection.close()
        for metrics in [client, server] {
            await eventually("every connection left the established and closing states") {
                meter(metrics, "taps_connections", tls + [("state", "established")]) == 0
                    && meter(metrics, "taps_connections", tls + [("state", "closing")]) == 0
            }
            XCTAssertEqual(meter(metrics, "taps_send_queue_bytes", tls), 0, "every write completed")
        }
        XCTAssertFalse(client.meters(label: "taps_send_queue_bytes").isEmpty, "the send queue was measured")
        echo.cancel()
        await listener.stop()
    }

    func testAHandshakeThatFailsIsCountedOnBothSides() async throws {
        let server = TestMetrics(), client = TestMetrics()
        var listening = Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity, framer: LengthPrefixFramer())
        listening.registry = StackRegistry(stacks: [.tlsTCP])
        let listener = try await withMetricsFactory(server) { try await listening.listen() }
        var security = SecurityParameters.clientDefault  // the system's roots, which do not have the test CA
        security.serverName = "localhost"
        var initiating = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableMessage,
                                       security: security, framer: LengthPrefixFramer())
        initiating.registry = StackRegistry(stacks: [.tlsTCP])
        do {
            _ = try await withMetricsFactory(client) { try await initiating.initiate(timeout: .seconds(5)) }
            XCTFail("the client must not trust the test certificate")
        } catch {}
        let failed = [("stack", "tls-tcp"), ("result", "failed")]
        XCTAssertEqual(counter(client, "taps_handshakes_total", failed), 1)
        XCTAssertEqual(counter(client, "taps_handshakes_total", [("stack", "tls-tcp"), ("result", "full")]), 0)
        await eventually("the server counts the handshake its peer broke off") { counter(server, "taps_handshakes_total", failed) == 1 }
        XCTAssertEqual(meter(client, "taps_connections", [("stack", "tls-tcp"), ("state", "establishing")]), 0)
        await listener.stop()
    }

    func testEverySCTPPacketOneSideSendsTheOtherCountsAsReceived() async throws {
        let server = TestMetrics(), client = TestMetrics()
        let listener = try await withMetricsFactory(server) { try await SCTPLossTests.preconnection(local: .loopback()).listen() }
        let echo = startEcho(listener)
        let initiating = SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port))
        let connection = try await withMetricsFactory(client) { try await initiating.initiate() }
        for _ in 0..<50 {
            try await connection.send([UInt8](repeating: 7, count: 3_000))
            _ = try await connection.receive()
        }
        await connection.close()
        let sctp = [("stack", "sctp")]
        func packets(_ metrics: TestMetrics, _ direction: String) -> Int64 {
            counter(metrics, "taps_sctp_packets_total", sctp + [("direction", direction)])
        }
        // The association's shutdown goes on after close(): compare once the counts stop moving.
        var counts: [Int64] = []
        var settled = false
        for _ in 0..<100 where !settled {
            let now = [packets(client, "sent"), packets(server, "received"), packets(server, "sent"), packets(client, "received")]
            settled = now == counts && now[0] == now[1] && now[2] == now[3]
            counts = now
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(settled, "each side received every packet the other sent (loopback loses none): \(counts)")
        // 3,000-byte messages take 3 packets each at the 1,280-byte MTU, and SACKs come back.
        XCTAssertGreaterThan(packets(client, "sent"), 150)
        XCTAssertGreaterThan(packets(server, "sent"), 150)
        XCTAssertEqual(counter(client, "taps_messages_total", sctp + [("direction", "received")]), 50)
        XCTAssertEqual(counter(server, "taps_bytes_total", sctp + [("direction", "received")]), 150_000)
        echo.cancel()
        await listener.stop()
    }

    func testLossCorruptionAndRetransmissionsAreCounted() async throws {
        let server = TestMetrics(), client = TestMetrics()
        let listener = try await withMetricsFactory(server) { try await SCTPLossTests.preconnection(local: .loopback()).listen() }
        var initiating = SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port))
        initiating.lossyPath = LossyPath(lossRate: 0.1, corruptionRate: 0.05, seed: 11)
        let connection = try await withMetricsFactory(client) { try await initiating.initiate(timeout: .seconds(10)) }
        let peer = try await listener.firstConnection()
        let total = 200
        async let sending: Void = { for _ in 0..<total { try await connection.send([UInt8](repeating: 1, count: 2_000)) } }()
        for _ in 0..<total { _ = try await peer.receive() }
        try await sending
        let dropped = counter(server, "taps_sctp_packets_dropped_total", [("stack", "sctp"), ("reason", "checksum")])
            + counter(client, "taps_sctp_packets_dropped_total", [("stack", "sctp"), ("reason", "checksum")])
        XCTAssertGreaterThan(dropped, 0, "corrupted packets fail their CRC32c")
        // usrsctp's process-wide statistics go to the newest association's factory, once a second.
        await eventually("usrsctp's retransmissions reach a factory", within: 4) {
            counter(server, "taps_sctp_retransmissions_total", []) + counter(client, "taps_sctp_retransmissions_total", []) > 0
        }
        await connection.abort()
        await peer.abort()
        await listener.stop()
    }

    func testDTLSChunkHandshakesRekeysAndForgeriesAreCounted() async throws {
        let server = TestMetrics(), client = TestMetrics()
        let listener = try await withMetricsFactory(server) { try await DTLSChunkDTLS13Tests.listener() }
        let echo = startEcho(listener)
        let forged = ForgeryCount()
        var initiating = DTLSChunkDTLS13Tests.client(listener.localAddress.port)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            // After the handshake: every tenth protected packet is preceded by a forgery.
            guard outgoing, DTLSChunkAttackTests.isProtected(datagram), forged.next() % 10 == 0 else { return [datagram] }
            var forgery = datagram
            forgery[24] ^= 0x01
            return [DTLSChunkAttackTests.withChecksum(forgery), datagram]
        }
        initiating.lossyPath = lossy
        let connection = try await withMetricsFactory(client) { try await initiating.initiate(timeout: .seconds(10)) }
        let chunk = [("stack", "dtls-chunk-sctp")]
        for _ in 0..<40 {
            try await connection.send([UInt8](repeating: 3, count: 500))
            _ = try await connection.receive()
        }
        let events = await connection.events()
        try await connection.updateKeys()
        for await event in events { if case .keysUpdated = event { break } }
        try await connection.send("after the rekey")
        let echoed = try await connection.receive()
        XCTAssertEqual(echoed.text, "after the rekey")

        for metrics in [client, server] {
            let side = metrics === client ? "client" : "server"
            await eventually("\(side): the first handshake and the rekey's") {
                counter(metrics, "taps_handshakes_total", chunk + [("result", "full")]) == 2
            }
            XCTAssertEqual(counter(metrics, "taps_handshakes_total", chunk + [("result", "failed")]), 0, side)
        }
        XCTAssertEqual(counter(client, "taps_key_updates_total", chunk), 1)
        let status = try await DTLSChunkSCTPTests.chunkState(of: connection)
        XCTAssertEqual(status.counters.aeadFailures, 0, "the client receives no forgery")
        let aead = counter(server, "taps_dtls_chunk_packets_dropped_total", chunk + [("reason", "aead")])
        XCTAssertGreaterThanOrEqual(aead, Int64(forged.value / 10) - 1, "every forgery the server got failed authentication")
        XCTAssertGreaterThan(aead, 3)
        await connection.close()
        echo.cancel()
        await listener.stop()
    }
}

private final class ForgeryCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func next() -> Int { lock.withLock { count += 1; return count } }
}
