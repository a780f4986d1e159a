import Foundation
import Synchronization
import XCTest
@testable import Taps

/// tls-sctp carrying data: streams side by side, a lossy path, a failed stream among good ones, and
/// the largest TLS records over a small MTU.
final class TLSSCTPTransferTests: XCTestCase {
    /// A stream whose handshake fails (its certificate rejected by the client's verifier) ends that
    /// connection only; the association's other streams go on sending.
    func testAStreamWhoseHandshakeFailsEndsAloneWhileTheOthersSend() async throws {
        let listener = try await TLSSCTP.listener()
        let verdicts = Atomic<Int>(0)
        var security = TLSSCTP.pki.clientSecurity
        // Full handshakes on every stream, so the verifier sees each; it rejects the second.
        security.trustVerifier = TrustVerifier { challenge in
            verdicts.add(1, ordering: .relaxed).newValue == 2 || !challenge.passesDefaultValidation
                ? .reject(reason: "stream 1 is not trusted") : .trust
        }
        let client = TLSSCTP.client(listener.localAddress.port, security: security) { $0.sctp.tlsHandshakes = .parallel }
        let first = try await client.initiate(timeout: .seconds(10))
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { try await first.clone() }
        XCTAssertTrue(error?.message.contains("stream 1 is not trusted") ?? false, "\(String(describing: error))")
        let third = try await first.clone()
        for (index, connection) in [first, third].enumerated() { try await connection.send(TLSSCTP.greeting(index)) }
        let servers = try await TLSSCTP.acceptStreams(2, on: listener)
        try await TLSSCTP.sendPattern(first, stream: 0, total: 100_000)
        try await TLSSCTP.sendPattern(third, stream: 1, total: 100_000)
        let got0 = try await TLSSCTP.receivePattern(try XCTUnwrap(servers[0]), stream: 0, total: 100_000)
        let got1 = try await TLSSCTP.receivePattern(try XCTUnwrap(servers[1]), stream: 1, total: 100_000)
        XCTAssertEqual([got0, got1], [100_000, 100_000], "the other streams carry on")
        let failed = await listener.failedEstablishments
        XCTAssertEqual(failed, 1, "the server counted the one stream whose handshake failed")
        await first.abort()
        await third.abort()
        await listener.stop()
    }

    /// Eight streams each sending 2 MB at once arrive intact and in order per stream; a stream whose
    /// reader waits does not hold the others up.
    func testEightStreamsInterleaveAndASlowReaderStallsNoOther() async throws {
        let listener = try await TLSSCTP.listener()
        let (clients, servers) = try await TLSSCTP.openStreams(8, from: TLSSCTP.client(listener.localAddress.port), to: listener)
        let total = 2 * 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let fast = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<7, total: total)
        XCTAssertEqual(fast, Array(repeating: total, count: 7), "seven streams complete while the eighth is not read")
        let slow = try await TLSSCTP.receivePattern(try XCTUnwrap(servers[7]), stream: 7, total: total)
        XCTAssertEqual(slow, total, "the unread stream's data waited and arrives whole")
        try await sending
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// 20 MB over 4 TLS streams through 5 % loss, reordering, duplication and corruption arrive intact.
    func testTwentyMegabytesOverFourTLSStreamsThroughAFaultyPath() async throws {
        let listener = try await TLSSCTP.listener(configure: TLSSCTP.fastRecovery)
        var client = TLSSCTP.client(listener.localAddress.port, configure: TLSSCTP.fastRecovery)
        client.lossyPath = TLSSCTP.faultyPath
        let (clients, _) = try await TLSSCTP.transferThroughFaultyPath(from: client, to: listener)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// RFC 3436 section 3.2 and 4.1: the mandatory TLS_RSA_WITH_AES_128_CBC_SHA on TLS 1.2, with
    /// records of 16 KB of plaintext (the largest TLS 1.2 makes), each one user message that SCTP
    /// fragments over a 1,280-byte path and joins again.
    func testMaximumSizeCBCRecordsCrossA1280ByteMTU() async throws {
        var server = SecurityParameters.server(identity: TLSSCTP.pki.identity("rsa"))
        server.allowedVersions = [.tls12]
        server.algorithms.tls12Ciphers = ["AES128-SHA"]
        var security = TLSSCTP.pki.clientSecurity
        security.allowedVersions = [.tls12]
        security.algorithms.tls12Ciphers = ["AES128-SHA"]
        let mtu = { (transport: inout TransportProperties) in transport.sctp.pathMTU = 1280 }
        let listener = try await TLSSCTP.listener(security: server, configure: mtu)
        var client = TLSSCTP.client(listener.localAddress.port, security: security, configure: mtu)
        client.lossyPath = LossyPath()
        let (clients, servers) = try await TLSSCTP.openStreams(1, from: client, to: listener)
        let connection = clients[0]
        let wire = try await watchWire(of: connection)
        let details = try await securityDetails(of: connection)
        XCTAssertEqual(details.protocolVersion, "TLSv1.2")
        XCTAssertEqual(details.cipherSuite, "AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA")
        let total = 1024 * 1024
        try await TLSSCTP.sendPattern(connection, stream: 0, total: total, chunk: 16_384)
        let serverSide = try XCTUnwrap(servers[0])
        let received = try await TLSSCTP.receivePattern(serverSide, stream: 0, total: total)
        XCTAssertEqual(received, total)
        let largest = try await largestTLSInput(of: serverSide)
        XCTAssertGreaterThan(largest, 16_384 + 5, "whole maximum-size records arrived as single user messages")
        XCTAssertLessThanOrEqual(largest, 18_437, "no message is larger than the largest TLSCiphertext (RFC 3436 section 3.2)")
        XCTAssertLessThanOrEqual(wire.largest, 1280, "SCTP fragmented each record to fit the path")
        await connection.abort()
        await listener.stop()
    }

    /// On a 16,384-byte path a maximum-size record would take a packet and a tail packet: records are
    /// cut to SCTP's fragmentation point instead, so each travels in one packet and 64 KB messages
    /// cost five packets, not eight.
    func testRecordsFillOnePacketEachOnALargePath() async throws {
        let mtu = { (transport: inout TransportProperties) in transport.sctp.pathMTU = 16_384 }
        let listener = try await TLSSCTP.listener(configure: mtu)
        var client = TLSSCTP.client(listener.localAddress.port, configure: mtu)
        client.lossyPath = LossyPath()
        let (clients, servers) = try await TLSSCTP.openStreams(1, from: client, to: listener)
        let connection = clients[0]
        let serverSide = try XCTUnwrap(servers[0])
        try await TLSSCTP.sendPattern(connection, stream: 0, total: 1, chunk: 1)
        let first = try await TLSSCTP.receivePattern(serverSide, stream: 0, total: 1)
        XCTAssertEqual(first, 1)
        let wire = try await watchWire(of: connection)
        let total = 16 * 65_536
        try await TLSSCTP.sendPattern(connection, stream: 0, total: total, chunk: 65_536)
        let received = try await TLSSCTP.receivePattern(serverSide, stream: 0, total: total)
        XCTAssertEqual(received, total)
        let fragment = try await connection.loop.submit {
            connection.assumeIsolated { $0.layer.layerChain.lazy.compactMap(\.messageFragmentSize).first }
        }
        let largest = try await largestTLSInput(of: serverSide)
        XCTAssertLessThanOrEqual(largest, try XCTUnwrap(fragment, "SCTP reports its fragmentation point"), "every record fits one packet")
        XCTAssertGreaterThan(largest, 16_000, "records stay close to the packet's size")
        XCTAssertLessThanOrEqual(wire.count, 16 * 5 + 8, "five packets per 64 KB message, and a few SACKs (eight if records spilled over)")
        try await TLSSCTP.sendPattern(serverSide, stream: 0, total: 65_536, chunk: 65_536)
        let echoed = try await TLSSCTP.receivePattern(connection, stream: 0, total: 65_536)
        XCTAssertEqual(echoed, 65_536)
        let largestBack = try await largestTLSInput(of: connection)
        XCTAssertLessThanOrEqual(largestBack, try XCTUnwrap(fragment), "the accepting end fits its records too")
        XCTAssertGreaterThan(largestBack, 16_000)
        let writers = try await [connection, serverSide].asyncMap { try await recordsSealedByTheWriter(of: $0) }
        XCTAssertEqual(writers.map { $0 > 0 }, [true, true], "both ends sealed their records with TLS13RecordProtection")
        let readers = try await [connection, serverSide].asyncMap { try await recordsOpenedByTheReader(of: $0) }
        XCTAssertEqual(readers.map { $0 > 0 }, [true, true], "both ends opened the peer's records with TLS13RecordProtection")
        await connection.abort()
        await listener.stop()
    }

    /// The records a connection's TLS13RecordProtection sealed (0: OpenSSL seals them).
    private func recordsSealedByTheWriter(of connection: Connection) async throws -> UInt64 {
        let sealed = try await connection.loop.submit {
            connection.assumeIsolated { connection in
                connection.layer.layerChain.lazy.compactMap { ($0 as? TLSLayer)?.engine.recordWriter?.sequence ?? 0 }.first
            }
        }
        return try XCTUnwrap(sealed, "no TLS layer on the connection")
    }

    /// The records a connection's reader opened (0: OpenSSL opens them).
    private func recordsOpenedByTheReader(of connection: Connection) async throws -> UInt64 {
        let opened = try await connection.loop.submit {
            connection.assumeIsolated { connection in
                connection.layer.layerChain.lazy.compactMap { ($0 as? TLSLayer)?.engine.recordReader?.sequence ?? 0 }.first
            }
        }
        return try XCTUnwrap(opened, "no TLS layer on the connection")
    }

    /// The largest user message a connection's TLS layer took as input.
    private func largestTLSInput(of connection: Connection) async throws -> Int {
        let largest = try await connection.loop.submit {
            connection.assumeIsolated { connection in
                connection.layer.layerChain.lazy.compactMap { ($0 as? TLSLayer)?.largestInboundMessage }.first
            }
        }
        return try XCTUnwrap(largest, "no TLS layer on the connection")
    }
}
