import Foundation
import Synchronization
import XCTest
@testable import Taps

/// CT on dtls-chunk-sctp: the association ends only by what the peer sent under the keys. `close()`
/// runs SCTP's SHUTDOWN exchange inside DTLS chunks and the peer sees a clean end; an ABORT or
/// SHUTDOWN in clear, even with the right verification tag, is dropped and counted.
final class DTLSChunkTerminationTests: XCTestCase {
    /// A plain SCTP packet with the ports and verification tag of `template` (a packet the client
    /// received, so an on-path attacker's best guess) and one chunk.
    static func forged(like template: [UInt8], chunk: [UInt8]) -> [UInt8] {
        DTLSChunkAttackTests.withChecksum(Array(template.prefix(8)) + [0, 0, 0, 0] + chunk)
    }

    func testAbortAndShutdownInClearWithTheRightTagAreDroppedAndTheAssociationGoesOn() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let echo = startEcho(listener)
        let armed = Mutex(false)
        let injected = Counter()
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            guard !outgoing, DTLSChunkAttackTests.isProtected(datagram), armed.withLock({ $0 }), injected.value < 6 else { return [datagram] }
            _ = injected.next()
            _ = injected.next()
            let abort = Self.forged(like: datagram, chunk: [6, 0, 0, 4])                          // ABORT, no causes
            let shutdown = Self.forged(like: datagram, chunk: [7, 0, 0, 8, 0, 0, 0, 0])            // SHUTDOWN, cumulative TSN 0
            return [abort, shutdown, datagram]
        }
        let client = try await DTLSChunkSCTPTests.client(listener.localAddress.port, keys: keys, lossy: lossy).initiate(timeout: .seconds(10))
        let before = try await DTLSChunkSCTPTests.chunkState(of: client)
        armed.withLock { $0 = true }
        for index in 0..<20 {
            try await client.send("still here \(index)")
            let reply = try await client.receive()
            XCTAssertEqual(reply.text, "still here \(index)")
        }
        let after = try await DTLSChunkSCTPTests.chunkState(of: client)
        XCTAssertGreaterThanOrEqual(injected.value, 6, "the forgeries reached the client")
        XCTAssertGreaterThanOrEqual(after.counters.droppedUnprotected - before.counters.droppedUnprotected, injected.value,
                                    "every packet in clear was dropped")
        await client.close()
        await listener.stop()
        echo.cancel()
    }

    /// The client's close: the server reads every message and then a clean end, the client's close
    /// completes without an error, and every packet the client sent after the handshake, the
    /// SHUTDOWN exchange included, was one DTLS chunk.
    func testCloseEndsCleanlyUnderProtection() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let wire = WireLog()
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            if outgoing { wire.append(datagram) }
            return [datagram]
        }
        let client = try await DTLSChunkSCTPTests.client(listener.localAddress.port, keys: keys, lossy: lossy).initiate(timeout: .seconds(10))
        try await client.send("last words")
        let server = try await listener.firstConnection()
        let events = await client.events()
        await client.close()
        var texts: [String] = []
        while true {
            let message = try await server.receive()
            if !message.content.isEmpty { texts.append(message.text ?? "") }
            if message.isFinal { break }
        }
        XCTAssertEqual(texts, ["last words"])
        var sawClosed = false
        for await event in events {
            if case .connectionError(let error) = event { XCTFail("the close failed: \(error)") }
            if case .closed = event {
                sawClosed = true
                break
            }
        }
        XCTAssertTrue(sawClosed)
        // The INIT and COOKIE ECHO go in clear (KMId 0's keys are installed at the COOKIE ACK).
        XCTAssertGreaterThan(wire.count, 3)
        XCTAssertTrue(wire.all(after: 2, DTLSChunkAttackTests.isProtected), "a packet of the client after its COOKIE ECHO went in clear")
        await listener.stop()
    }
}
