import Foundation
import XCTest
@testable import Taps

/// The sctp stack under a lossy path, and bad packets on the wire.
final class SCTPLossTests: XCTestCase {
    /// The sctp stack alone, recovering from loss in tens of milliseconds (also MetricsTests').
    static func preconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        // Loopback round trips are microseconds: recover from loss in tens of milliseconds, not seconds.
        transport.sctp.retransmissionTimeoutMinimum = .milliseconds(20)
        transport.sctp.retransmissionTimeoutInitial = .milliseconds(100)
        transport.sctp.retransmissionTimeoutMaximum = .milliseconds(400)
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: .disabled)
        preconnection.registry = StackRegistry(stacks: [.sctp])
        return preconnection
    }

    /// Message `index` of stream `stream`: its number and a pattern, so order and content are checked.
    private static func message(stream: Int, index: Int, size: Int) -> [UInt8] {
        var bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7 &+ stream) }
        withUnsafeBytes(of: UInt32(index).bigEndian) { bytes.replaceSubrange(0..<4, with: $0) }
        return bytes
    }

    /// Sends `count` messages on each connection, the connections side by side.
    private static func sendAll(_ connections: [Connection], count: Int, size: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for stream in connections.indices {
                let connection = connections[stream]
                group.addTask {
                    for index in 0..<count { try await connection.send(message(stream: stream, index: index, size: size)) }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Receives `count` messages on one stream and checks each against the sender's pattern.
    private static func receiveAll(_ connection: Connection, count: Int, size: Int) async throws -> Int {
        var stream = -1
        for index in 0..<count {
            let message = try await connection.receive()
            // Byte 4 of message 0 is 4 * 31 + stream.
            if stream < 0 { stream = Int(message.content[4] &- UInt8(truncatingIfNeeded: 4 &* 31)) }
            XCTAssertEqual(message.content, Self.message(stream: stream, index: index, size: size), "stream \(stream) message \(index)")
        }
        return count
    }

    func testTwentyMegabytesOverFourStreamsThroughLossReorderingDuplicationAndCorruption() async throws {
        let listener = try await Self.preconnection(local: .loopback()).listen()
        var client = Self.preconnection(remote: .loopback(port: listener.localAddress.port))
        client.lossyPath = LossyPath(lossRate: 0.05, reorderRate: 0.05, duplicateRate: 0.01, corruptionRate: 0.01, seed: 42)
        let badChecksumsBefore = SCTPPath.droppedBadChecksum.load(ordering: .relaxed)
        let first = try await client.initiate(timeout: .seconds(10))
        var opened = [first]
        for _ in 1..<4 { opened.append(try await first.clone()) }
        let streams = opened
        let messageSize = 16 * 1024
        let perStream = 20 * 1024 * 1024 / 4 / messageSize  // 320 messages of 16 KB each

        async let sending: Void = Self.sendAll(streams, count: perStream, size: messageSize)
        var accepted: [Connection] = []
        for await connection in listener.connections {
            accepted.append(connection)
            if accepted.count == 4 { break }
        }
        let servers = accepted
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for connection in servers {
                group.addTask { try await Self.receiveAll(connection, count: perStream, size: messageSize) }
            }
            var counts: [Int] = []
            for try await count in group { counts.append(count) }
            return counts
        }
        try await sending
        XCTAssertEqual(counts, [perStream, perStream, perStream, perStream])
        XCTAssertGreaterThan(SCTPPath.droppedBadChecksum.load(ordering: .relaxed), badChecksumsBefore,
                             "corrupted packets were caught by the CRC32c check")
        // The path really did lose, reorder and duplicate datagrams on the way.
        let faults = try await lossyCounters(of: first)
        XCTAssertGreaterThan(faults.dropped, 0)
        XCTAssertGreaterThan(faults.reordered, 0)
        XCTAssertGreaterThan(faults.duplicated, 0)
        XCTAssertGreaterThan(faults.corrupted, 0)
        for connection in streams { await connection.abort() }
        await listener.stop()
    }
}

extension SCTPLossTests {
    /// An sctp echo listener in a process of its own (taps-echo), to be killed without a goodbye,
    /// and its port.
    static func echoPeerProcess(file: StaticString = #filePath, line: UInt = #line) async throws -> (ChildProcess, UInt16) {
        let port = try await freePort(udp: true)
        let peer = try ChildProcess(ChildProcess.product("taps-echo"), ["listen", "--stack", "sctp", "--port", "\(port)"])
        let listening = await peer.waitFor("listening on")
        XCTAssertTrue(listening, peer.text, file: file, line: line)
        return (peer, port)
    }

    /// An INIT chunk (RFC 9260 section 3.3.2) from `sourcePort` to `destinationPort`, checksummed.
    private static func initPacket(from sourcePort: UInt16, to destinationPort: UInt16, tag: UInt32) -> [UInt8] {
        var packet: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.bigEndian) { packet.append(contentsOf: $0) } }
        append(sourcePort); append(destinationPort); append(UInt32(0)); append(UInt32(0))  // verification tag 0, checksum
        packet += [1, 0]; append(UInt16(20))  // INIT, flags, length
        append(tag); append(UInt32(65_536)); append(UInt16(10)); append(UInt16(10)); append(UInt32(1))
        SCTPPacket.fillChecksum(&packet)
        return packet
    }

    func testBadPacketsAreCountedAndDroppedAndAnINITFloodLeavesNoAssociation() async throws {
        let listener = try await Self.preconnection(local: .loopback()).listen()
        let port = listener.localAddress.port
        var raw = Preconnection(remote: .loopback(port: port), transport: .unreliableDatagram, security: .disabled)
        raw.registry = StackRegistry(stacks: [.udp])
        let sender = try await raw.initiate()
        let shortBefore = SCTPPath.droppedTooShort.load(ordering: .relaxed)
        let badBefore = SCTPPath.droppedBadChecksum.load(ordering: .relaxed)

        let outOfTheBlueBefore = SCTPAcceptor.outOfTheBlueDatagrams.load(ordering: .relaxed)
        // Before any INIT, a datagram from this sender makes no path: it is out of the blue.
        try await sender.send([1, 2, 3])
        var corrupted = Self.initPacket(from: 5000, to: port, tag: 7)
        corrupted[corrupted.count - 1] ^= 0xff
        try await sender.send(corrupted)
        // Now the INIT made a path: a short packet on it is counted there.
        try await sender.send([1, 2, 3])
        // A checksummed packet with an unknown chunk type and a wrong verification tag: usrsctp drops it.
        var unknown = Self.initPacket(from: 5000, to: port, tag: 7)
        unknown[12] = 0xbf
        unknown[4] = 0x55
        unknown.replaceSubrange(8..<12, with: [0, 0, 0, 0])
        SCTPPacket.fillChecksum(&unknown)
        try await sender.send(unknown)

        // An INIT flood: usrsctp answers each with an INIT ACK carrying a state cookie and keeps no state.
        // In bursts of 20 (no receive buffer overflows), with a watchdog against a lost datagram.
        let flood = 100
        let watchdog = abort(sender, after: .seconds(20))
        var initAcks = 0
        for burst in 0..<flood / 20 {
            for index in 0..<20 { try await sender.send(Self.initPacket(from: 5000, to: port, tag: UInt32(burst * 20 + index + 1))) }
            while initAcks < (burst + 1) * 20 {
                let reply = try await sender.receive()
                if reply.content.count > 12 && reply.content[12] == 2 { initAcks += 1 }
            }
        }
        watchdog.cancel()
        XCTAssertEqual(initAcks, flood)
        XCTAssertEqual(SCTPPath.droppedTooShort.load(ordering: .relaxed) - shortBefore, 1)
        XCTAssertEqual(SCTPAcceptor.outOfTheBlueDatagrams.load(ordering: .relaxed) - outOfTheBlueBefore, 1)
        XCTAssertEqual(SCTPPath.droppedBadChecksum.load(ordering: .relaxed) - badBefore, 1)

        // No association came of it, and a real client still gets through.
        let echo = startEcho(listener)
        let client = try await Self.preconnection(remote: .loopback(port: port)).initiate(timeout: .seconds(5))
        try await client.send("after the flood")
        let reply = try await client.receive()
        XCTAssertEqual(reply.text, "after the flood")
        await client.close()
        await sender.abort()
        await listener.stop()
        echo.cancel()
    }

    func testAbortReachesThePeer() async throws {
        let listener = try await Self.preconnection(local: .loopback()).listen()
        let client = try await Self.preconnection(remote: .loopback(port: listener.localAddress.port)).initiate(timeout: .seconds(5))
        try await client.send("hello")
        let server = try await listener.firstConnection()
        _ = try await server.receive()
        await client.abort()
        let error = await XCTAssertThrowsTransportError(.connectionReset) { try await server.receive() }
        XCTAssertTrue(error?.message.contains("the peer aborted the SCTP association") == true, String(describing: error))
        await listener.stop()
    }
}

extension SCTPLossTests {
    func testPartialReliabilityGivesUpOnLostMessagesAndUnorderedIsReported() async throws {
        let listener = try await Self.preconnection(local: .loopback()).listen()
        var client = Self.preconnection(remote: .loopback(port: listener.localAddress.port))
        client.lossyPath = LossyPath(lossRate: 0.2, seed: 3)
        // The handshake's own packets may be lost too, and are retransmitted.
        let connection = try await client.initiate(timeout: .seconds(30))
        try await connection.send("start")
        let server = try await listener.firstConnection()
        _ = try await server.receive()

        let sent = 300
        for index in 0..<sent {
            var properties = MessageProperties()
            properties.ordered = false
            if index % 2 == 0 { properties.reliable = false } else { properties.lifetime = .milliseconds(1) }
            try await connection.send([UInt8(truncatingIfNeeded: index)] + [UInt8](repeating: 1, count: 200),
                                      context: MessageContext(properties: properties))
        }
        try await connection.send("end")  // reliable and ordered: arrives, after every ordered message
        var partiallyReliable = 0
        while true {
            let message = try await server.receive()
            if message.text == "end" { break }
            XCTAssertFalse(message.context.properties.ordered, "arrived as sent: unordered")
            partiallyReliable += 1
        }
        XCTAssertGreaterThan(partiallyReliable, 0)
        XCTAssertLessThan(partiallyReliable, sent, "with 20% loss and no retransmission some messages are abandoned")
        await connection.abort()
        await listener.stop()
    }
}

extension SCTPLossTests {
    func testAPeerThatVanishesEndsTheAssociationWithAnError() async throws {
        let (server, port) = try await Self.echoPeerProcess()
        defer { server.terminate() }
        let connection = try await Self.preconnection(remote: .loopback(port: port)).initiate(timeout: .seconds(5))
        let events = EventLog()
        await connection.setEventHandler { event in events.append(event) }
        try await connection.send("are you there?")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "are you there?")
        XCTAssertFalse(events.names.contains("pathChange"))
        // SIGKILL: no ABORT, no SHUTDOWN; the association must notice by itself.
        server.terminate()
        _ = await server.finish()
        do {
            // Retransmissions with the short timeouts of these tests give up within a few seconds.
            for _ in 0..<100 {
                try await connection.send([UInt8](repeating: 0, count: 1000))
                try await Task.sleep(for: .milliseconds(100))
            }
            _ = try await connection.receive()
            XCTFail("the association should have failed")
        } catch let error as TransportError {
            XCTAssertTrue([.connectionReset, .connectionClosed].contains(error.code), "\(error)")
        }
        // The path failed its retransmission limit (SCTP_ADDR_UNREACHABLE) before the association did.
        let names = events.names
        let pathChange = try XCTUnwrap(names.firstIndex(of: "pathChange"), "\(names)")
        let failure = try XCTUnwrap(names.firstIndex { $0.hasPrefix("connectionError") }, "\(names)")
        XCTAssertLessThan(pathChange, failure)
        await connection.abort()
    }
}

extension SCTPLossTests {
    /// INITs from many addresses that never send a COOKIE ECHO: the listener keeps a path for at
    /// most `maximumUnestablishedPeers` of them and forgets each after `associationSetupTimeout`;
    /// an association that does come up is kept.
    func testPeersThatNeverCompleteAnAssociationAreBoundedAndForgotten() async throws {
        var server = Self.preconnection(local: .loopback())
        server.transport.sctp.associationSetupTimeout = .milliseconds(300)
        server.transport.sctp.maximumUnestablishedPeers = 5
        let listener = try await server.listen()
        let port = listener.localAddress.port
        let refusedBefore = SCTPAcceptor.refusedNewPeerDatagrams.load(ordering: .relaxed)
        var senders: [Connection] = []
        for index in 0..<8 {
            var raw = Preconnection(remote: .loopback(port: port), transport: .unreliableDatagram, security: .disabled)
            raw.registry = StackRegistry(stacks: [.udp])
            let sender = try await raw.initiate()
            try await sender.send(Self.initPacket(from: 5000, to: port, tag: UInt32(index + 1)))
            senders.append(sender)
        }
        // The first five get an INIT ACK; the other three were dropped before any state was made.
        for sender in senders.prefix(5) {
            let watchdog = abort(sender, after: .seconds(20))
            let reply = try await sender.receive()
            watchdog.cancel()
            XCTAssertEqual(reply.content[12], 2, "INIT ACK")
        }
        let waiting = await listener.peersWithState
        XCTAssertEqual(waiting, 5)
        for _ in 0..<200 where SCTPAcceptor.refusedNewPeerDatagrams.load(ordering: .relaxed) - refusedBefore < 3 {
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTAssertEqual(SCTPAcceptor.refusedNewPeerDatagrams.load(ordering: .relaxed) - refusedBefore, 3, "counted and dropped")

        for _ in 0..<300 where await listener.peersWithState > 0 { try await Task.sleep(for: .milliseconds(10)) }
        let afterTimeout = await listener.peersWithState
        XCTAssertEqual(afterTimeout, 0, "paths without an association are forgotten")

        let echo = startEcho(listener)
        let client = try await Self.preconnection(remote: .loopback(port: port)).initiate(timeout: .seconds(5))
        try await Task.sleep(for: .milliseconds(700))  // past the setup timeout: an association is kept
        try await client.send("still here")
        let reply = try await client.receive()
        XCTAssertEqual(reply.text, "still here")
        let established = await listener.peersWithState
        XCTAssertEqual(established, 1)
        await client.close()
        for sender in senders { await sender.abort() }
        await listener.stop()
        echo.cancel()
    }
}

extension SCTPLossTests {
    /// Datagrams held up to 30 ms each (so they also overtake one another) still make whole, ordered
    /// messages.
    func testDelayedDatagramsStillDeliverEveryMessageInOrder() async throws {
        let listener = try await Self.preconnection(local: .loopback()).listen()
        var client = Self.preconnection(remote: .loopback(port: listener.localAddress.port))
        client.lossyPath = LossyPath(maximumDelay: .milliseconds(30), seed: 5)
        let connection = try await client.initiate(timeout: .seconds(10))
        let count = 100, size = 4_000
        async let sending: Void = Self.sendAll([connection], count: count, size: size)
        let server = try await listener.firstConnection()
        let received = try await Self.receiveAll(server, count: count, size: size)
        try await sending
        XCTAssertEqual(received, count)
        let delayed = try await lossyCounters(of: connection).delayed
        XCTAssertGreaterThan(delayed, 0, "the path held datagrams back")
        await connection.abort()
        await listener.stop()
    }
}

extension SCTPLossTests {
    /// A peer that vanishes (SIGKILL: no ABORT, no SHUTDOWN) is noticed by an end that only receives
    /// once keepAlive sends heartbeats and connTimeout bounds the retransmissions (issue 16: over
    /// 120 s of silence before).
    func testAVanishedPeerEndsAReceivingConnection() async throws {
        let (peer, port) = try await Self.echoPeerProcess()
        defer { peer.terminate() }
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        transport.keepAlive = .require
        transport.keepAliveTimeout = .milliseconds(200)
        transport.connTimeout = .seconds(1)
        var client = Preconnection(remote: .loopback(port: port), transport: transport, security: .disabled)
        client.registry = StackRegistry(stacks: [.sctp])
        let connection = try await client.initiate(timeout: .seconds(5))
        try await connection.send("ping")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "ping")
        // usrsctp's defaults take minutes; the watchdog's abort would show as `aborted`.
        let watchdog = abort(connection, after: .seconds(20))
        defer { watchdog.cancel() }
        peer.terminate()
        do {
            let message = try await connection.receive()
            XCTFail("received \(message.content.count) bytes from a dead peer")
        } catch let error as TransportError {
            // The association was lost: not a clean end, nor the watchdog's abort (connectionClosed),
            // and not an ABORT from the peer, which died without sending one.
            XCTAssertEqual(error.code, .connectionReset, "\(error)")
            XCTAssertTrue(error.message.contains("lost at this end"), "\(error)")
        }
        await connection.abort()
    }
}
