import XCTest
@testable import Taps

/// `close()` on SCTP drains what `send()` accepted for as long as the path needs, and gives up only
/// on an association that makes no progress at all (`SCTPOptions.closeStallLimit`).
final class SCTPCloseTests: XCTestCase {
    private static let message = [UInt8](repeating: 0x5a, count: 64 * 1024)
    /// 12 MiB: the receiver takes 8 (usrsctp's buffer and the connection's), the rest waits at the sender.
    private static let count = 192

    private func sendAllThenClose(to listener: Listener) async throws {
        let client = try await SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port)).initiate()
        for _ in 0..<Self.count { try await client.send(Self.message) }
        await client.close()
    }

    /// The receiver reads nothing for 7 s after the sender closed (the association used to be aborted
    /// 5 s into its close, and the peer lost what was still queued), then gets every byte and the end.
    func testCloseDeliversEverythingToAPeerThatStartsReadingLate() async throws {
        let listener = try await SCTPLossTests.preconnection(local: .loopback()).listen()
        try await sendAllThenClose(to: listener)
        let accepted = try await listener.firstConnection()
        try await Task.sleep(for: .seconds(7))
        var received = 0
        while true {
            let message = try await accepted.receive()
            received += message.content.count
            if message.isFinal { break }
        }
        XCTAssertEqual(received, Self.count * Self.message.count)
        await listener.stop()
    }

    /// A receiver that never reads keeps the sender's close from progressing: after the stall limit
    /// the association is aborted, and the receiver sees the reset after what had arrived.
    func testACloseThatMakesNoProgressIsAbortedAfterTheStallLimit() async throws {
        var server = SCTPLossTests.preconnection(local: .loopback())
        server.transport.sctp.closeStallLimit = .seconds(1)
        let listener = try await server.listen()
        var client = SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port))
        client.transport.sctp.closeStallLimit = .seconds(1)
        let connection = try await client.initiate()
        for _ in 0..<Self.count { try await connection.send(Self.message) }
        await connection.close()
        let accepted = try await listener.firstConnection()
        try await Task.sleep(for: .seconds(4))
        var received = 0
        let error = await XCTAssertThrowsTransportError(.connectionReset) {
            while true {
                let message = try await accepted.receive()
                received += message.content.count
                XCTAssertFalse(message.isFinal, "a stalled close must not end as if complete")
            }
        }
        XCTAssertNotNil(error)
        XCTAssertLessThan(received, Self.count * Self.message.count)
        await listener.stop()
    }
}
