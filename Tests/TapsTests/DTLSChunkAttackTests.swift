import Foundation
import XCTest
@testable import Taps

/// dtls-chunk-sctp under attack and faults: a man in the middle on the client's datagram path that
/// tampers, replays and strips the 0x8006 parameter, and a lossy path.
final class DTLSChunkAttackTests: XCTestCase {
    typealias Support = DTLSChunkSCTPTests

    static func fastRecovery(_ transport: inout TransportProperties) { TLSSCTP.fastRecovery(&transport) }

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
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: TLSSCTP.faultyPath, configure: Self.fastRecovery)
        let (clients, servers) = try await TLSSCTP.transferThroughFaultyPath(from: client, to: listener)
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
                // Flip one byte of the encrypted record (not the post-padding, which the receiver
                // ignores) and send the forgery first.
                var forged = datagram
                let recordEnd = 12 + (Int(datagram[14]) << 8 | Int(datagram[15]))
                forged[20 + index % (recordEnd - 20)] ^= 0x20
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
        // Forgeries counted before the server's counters are read: a SACK's may still be on its way.
        let forged = sequence.value / 5
        let state = try await Support.chunkState(of: try XCTUnwrap(servers[0]))
        XCTAssertGreaterThan(forged, 50)
        XCTAssertGreaterThanOrEqual(state.counters.aeadFailures, forged - 2, "every forgery fails authentication")
        XCTAssertEqual(state.counters.malformedDropped + state.counters.noKeyDropped, 0)
        XCTAssertGreaterThan(state.counters.replaysDropped, sequence.value / 7 / 2)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// The COOKIE ACK is lost, and so is everything the listener sends until the client's COOKIE
    /// ECHO has gone again. That one is in clear (the client has no send keys yet), and the listener,
    /// which requires protection, drops it as the draft says; the association comes up anyway, through
    /// the listener's protected key-confirmation heartbeats.
    func testALostCookieAckDoesNotStallTheAssociation() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys)
        var incoming = listener.connections.makeAsyncIterator()
        let cookieEchoes = Counter(), dropped = Counter()
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard datagram.count > 12 else { return [datagram] }
            if outgoing {
                if datagram[12] == 10 { _ = cookieEchoes.next() }
                return [datagram]
            }
            if cookieEchoes.value < 2 && (datagram[12] == 11 || datagram[12] == 0x41) {
                _ = dropped.next()
                return []
            }
            return [datagram]
        }
        let client = try await Support.client(listener.localAddress.port, keys: keys, lossy: lossy) {
            $0.sctp.retransmissionTimeoutInitial = .milliseconds(200)
            $0.sctp.retransmissionTimeoutMinimum = .milliseconds(100)
        }.initiate(timeout: .seconds(10))
        XCTAssertGreaterThanOrEqual(dropped.value, 1)
        XCTAssertGreaterThanOrEqual(cookieEchoes.value, 2, "the COOKIE ECHO went again, in clear")
        try await client.send("after a lost COOKIE ACK")
        let accepted = await incoming.next()
        let server = try XCTUnwrap(accepted)
        let message = try await server.receive()
        XCTAssertEqual(message.text, "after a lost COOKIE ACK")
        let status = await server.dtlsChunkStatus
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(status).counters.droppedUnprotected, 1, "the clear COOKIE ECHO was dropped")
        await client.close()
        await listener.stop()
    }

    /// Initiates to a listener with the same keys through a man in the middle that rewrites the 0x8006
    /// parameter of the INIT (outgoing) or the INIT ACK (incoming) with `change`; the error it gets.
    private func initiateThroughMiddle(rewriting chunkType: UInt8, _ change: @escaping @Sendable (DTLSKeyManagementParameter) -> DTLSKeyManagementParameter?,
                                       expecting code: TransportError.Code) async throws -> (TransportError?, failedAtListener: Int) {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Support.listener(keys: keys)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard outgoing == (chunkType == 1), datagram.count > 12, datagram[12] == chunkType else { return [datagram] }
            return [Self.rewritingParameter(datagram, change)]
        }
        let client = Support.client(listener.localAddress.port, keys: keys, lossy: lossy)
        let error = await XCTAssertThrowsTransportError(code) { try await client.initiate(timeout: .seconds(10)) }
        let failed = await listener.failedEstablishments
        await listener.stop()
        return (error, failed)
    }

    func testStrippingTheParameterFromTheInitIsRefusedWithMissingSupport() async throws {
        let (error, _) = try await initiateThroughMiddle(rewriting: 1, { _ in nil }, expecting: .connectionRefused)
        XCTAssertTrue(error?.message.contains("error cause 100") == true, "\(String(describing: error))")
    }

    func testStrippingTheParameterFromTheInitAckFailsTheClient() async throws {
        let (error, failed) = try await initiateThroughMiddle(rewriting: 2, { _ in nil }, expecting: .handshakeFailed)
        XCTAssertTrue(error?.message.contains("cause 100") == true, "\(String(describing: error))")
        XCTAssertEqual(failed, 0, "no association reached the listener")
    }

    func testOfferingOnlyAnUnknownMethodIsRefusedWithNoCommonMethod() async throws {
        let (error, _) = try await initiateThroughMiddle(rewriting: 1, { parameter in
            DTLSKeyManagementParameter(tieBreaker: parameter.tieBreaker, flags: parameter.flags, methods: [DTLSKeyManagementMethod(rawValue: 77)])
        }, expecting: .connectionRefused)
        XCTAssertTrue(error?.message.contains("error cause 101") == true, "\(String(describing: error))")
    }
}

/// A counter the rewriter (on the loop) and the test share.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func next() -> Int { lock.withLock { count += 1; return count } }
    var value: Int { lock.withLock { count } }
}
