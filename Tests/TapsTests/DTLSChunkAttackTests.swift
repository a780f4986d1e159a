import Foundation
import XCTest
@testable import Taps

/// dtls-chunk-sctp under attack and faults: a man in the middle on the client's datagram path that
/// tampers, replays and strips the 0x8006 parameter, and a lossy path.
final class DTLSChunkAttackTests: XCTestCase {
    typealias Support = DTLSChunkSCTPTests

    static func fastRecovery(_ transport: inout TransportProperties) {
        transport.sctp.retransmissionTimeoutMinimum = .milliseconds(20)
        transport.sctp.retransmissionTimeoutInitial = .milliseconds(100)
        transport.sctp.retransmissionTimeoutMaximum = .milliseconds(400)
    }

    /// The packet with its checksum made right again, so only the DTLS chunk can notice the change.
    static func withChecksum(_ packet: [UInt8]) -> [UInt8] {
        var packet = packet
        SCTPPacket.fillChecksum(&packet)
        return packet
    }

    static func isProtected(_ packet: [UInt8]) -> Bool { packet.count > 20 && packet[12] == 0x41 }

    /// The INIT or INIT ACK with its 0x8006 parameter changed by `change` (nil removes it).
    static func rewritingParameter(_ packet: [UInt8], _ change: (DTLSKeyManagementParameter) -> DTLSKeyManagementParameter?) -> [UInt8] {
        var cursor = 12 + 20
        let chunkLength = Int(packet[14]) << 8 | Int(packet[15])
        while cursor + 4 <= 12 + chunkLength {
            let type = UInt16(packet[cursor]) << 8 | UInt16(packet[cursor + 1])
            let length = Int(packet[cursor + 2]) << 8 | Int(packet[cursor + 3])
            let padded = (length + 3) & ~3
            if type == 0x8006, let parameter = DTLSKeyManagementParameter.parse(packet[cursor..<(cursor + length)]) {
                let replacement = change(parameter)?.paddedBytes ?? []
                var rewritten = Array(packet[..<cursor]) + replacement + Array(packet[min(packet.count, cursor + padded)...])
                // Our parameter is last in the chunk: the chunk ends where the replacement ends.
                let newLength = cursor - 12 + (change(parameter)?.wireBytes.count ?? 0)
                let end = replacement.isEmpty ? cursor - 12 : newLength
                rewritten[14] = UInt8(end >> 8)
                rewritten[15] = UInt8(end & 0xFF)
                return withChecksum(rewritten)
            }
            cursor += padded
        }
        return packet
    }

    func testTwentyMegabytesOverFourProtectedStreamsThroughAFaultyPath() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys, configure: Self.fastRecovery)
        let client = Support.client(listener.localAddress.port, keys: keys,
                                    lossy: LossyPath(lossRate: 0.05, reorderRate: 0.05, duplicateRate: 0.01, corruptionRate: 0.01, seed: 11),
                                    configure: Self.fastRecovery)
        let (clients, servers) = try await TLSSCTP.openStreams(4, from: client, to: listener)
        let total = 5 * 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let received = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<4, total: total)
        try await sending
        XCTAssertEqual(received, Array(repeating: total, count: 4))
        let faults = try await lossyCounters(of: clients[0])
        XCTAssertGreaterThan(faults.dropped, 0)
        XCTAssertGreaterThan(faults.duplicated, 0)
        XCTAssertGreaterThan(faults.corrupted, 0)
        // Duplicated packets reach each end's replay window; corrupted ones fail the CRC32c or the AEAD.
        let serverState = try await Support.chunkState(of: try XCTUnwrap(servers[0]))
        let clientState = try await Support.chunkState(of: clients[0])
        XCTAssertGreaterThan(serverState.counters.replaysDropped + clientState.counters.replaysDropped, 0)
        XCTAssertGreaterThan(serverState.counters.receivedProtected, 3_000)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    func testTamperedAndReplayedPacketsAreDroppedAndCountedWhileEverythingArrives() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys, configure: Self.fastRecovery)
        let sequence = Counter()
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard outgoing, Self.isProtected(datagram) else { return [datagram] }
            let index = sequence.next()
            if index % 5 == 0 {
                // Flip one byte of the record (past the headers) and send the forgery first.
                var forged = datagram
                forged[20 + index % (datagram.count - 20)] ^= 0x20
                return [Self.withChecksum(forged), datagram]
            }
            if index % 7 == 0 { return [datagram, datagram] }  // a replay right behind the original
            return [datagram]
        }
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: lossy, configure: Self.fastRecovery)
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: client, to: listener)
        let total = 2 * 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let received = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<2, total: total)
        try await sending
        XCTAssertEqual(received, [total, total])
        let state = try await Support.chunkState(of: try XCTUnwrap(servers[0]))
        let forged = sequence.value / 5
        XCTAssertGreaterThan(forged, 50)
        XCTAssertGreaterThanOrEqual(state.counters.aeadFailures + state.counters.malformedDropped + state.counters.noKeyDropped, forged - 1)
        XCTAssertGreaterThan(state.counters.replaysDropped, sequence.value / 7 / 2)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    func testStrippingTheParameterFromTheInitIsRefusedWithMissingSupport() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard outgoing, datagram.count > 12, datagram[12] == 1 else { return [datagram] }
            return [Self.rewritingParameter(datagram) { _ in nil }]
        }
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: lossy)
        let error = await XCTAssertThrowsTransportError(.connectionRefused) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("error cause 100") == true, "\(String(describing: error))")
        await listener.stop()
    }

    func testStrippingTheParameterFromTheInitAckFailsTheClient() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard !outgoing, datagram.count > 12, datagram[12] == 2 else { return [datagram] }
            return [Self.rewritingParameter(datagram) { _ in nil }]
        }
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: lossy)
        let error = await XCTAssertThrowsTransportError(.handshakeFailed) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("cause 100") == true, "\(String(describing: error))")
        let failed = await listener.failedEstablishments
        XCTAssertEqual(failed, 0, "no association reached the listener")
        await listener.stop()
    }

    func testOfferingOnlyAnUnknownMethodIsRefusedWithNoCommonMethod() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard outgoing, datagram.count > 12, datagram[12] == 1 else { return [datagram] }
            return [Self.rewritingParameter(datagram) { parameter in
                DTLSKeyManagementParameter(tieBreaker: parameter.tieBreaker, flags: parameter.flags, methods: [DTLSKeyManagementMethod(rawValue: 77)])
            }]
        }
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: lossy)
        let error = await XCTAssertThrowsTransportError(.connectionRefused) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("error cause 101") == true, "\(String(describing: error))")
        await listener.stop()
    }
}

/// A counter the rewriter (on the loop) and the test share.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func next() -> Int { lock.withLock { count += 1; return count } }
    var value: Int { lock.withLock { count } }
}
