import XCTest
@testable import Taps

/// Small messages sent together share packets (RFC 9260 section 6.10) instead of going one packet each.
final class SCTPBundlingTests: XCTestCase {
    func testSmallMessagesSentInOneGoShareFullPackets() async throws {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        transport.sctp.pathMTU = 16_384
        var server = Preconnection(local: .loopback(), transport: transport, security: .disabled)
        server.registry = StackRegistry(stacks: [.sctp])
        let listener = try await server.listen()
        var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: transport, security: .disabled)
        client.registry = StackRegistry(stacks: [.sctp])
        client.lossyPath = LossyPath()  // no faults: it only counts datagrams
        let connection = try await client.initiate(timeout: .seconds(5))
        let count = 1_000
        let receiver = Task { () -> [Int] in
            var iterator = listener.connections.makeAsyncIterator()
            guard let accepted = await iterator.next() else { return [] }
            var indices: [Int] = []
            while indices.count < count, let message = try? await accepted.receive() {
                indices.append(Int(message.content[0]) | Int(message.content[1]) << 8)
            }
            return indices
        }
        let before = try await datagramsWritten(by: connection)
        try await Task(executorPreference: connection.loop) {
            for index in 0..<count {
                var message = [UInt8](repeating: 0x5A, count: 100)
                message[0] = UInt8(index & 0xFF)
                message[1] = UInt8(index >> 8)
                try await connection.send(message)
            }
        }.value
        let indices = await receiver.value
        XCTAssertEqual(indices, Array(0..<count))
        let packets = try await datagramsWritten(by: connection) - before
        // 1,000 DATA chunks of 116 bytes; about 140 fit a 16 KB packet. A packet per message, or per
        // two as usrsctp's own Nagle makes them, would be 500 or more.
        XCTAssertLessThan(packets, 100, "\(count) messages went in \(packets) packets")
        await connection.close()
        await listener.stop()
    }

    private func datagramsWritten(by connection: Connection) async throws -> Int {
        try await lossyCounters(of: connection).written
    }
}
