import Foundation
import XCTest
@testable import Taps

/// The sctp stack under a lossy path, and bad packets on the wire.
final class SCTPLossTests: XCTestCase {
    private func preconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
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
        let listener = try await preconnection(local: .loopback()).listen()
        var client = preconnection(remote: .loopback(port: listener.localAddress.port))
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
        for connection in streams { await connection.abort() }
        await listener.stop()
    }
}
