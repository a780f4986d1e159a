import XCTest
@testable import Taps

/// `close()` on SCTP drains what `send()` accepted for as long as the path needs, and gives up only
/// on an association that makes no progress at all (`SCTPOptions.closeStallLimit`).
final class SCTPCloseTests: XCTestCase {
    private static let message = [UInt8](repeating: 0x5a, count: 64 * 1024)
    /// 12 MiB: the receiver takes 8 (usrsctp's buffer and the connection's), the rest waits at the sender.
    private static let count = 192

    /// Sends 12 MiB, closes, and returns the error the close ended with (nil: it completed).
    private static func sendAllThenClose(_ client: Preconnection) async throws -> TransportError? {
        let connection = try await client.initiate()
        let events = await connection.events()
        for _ in 0..<count { try await connection.send(message) }
        await connection.close()  // returns once the association closed or gave up, not before
        var closeError: TransportError?
        for await event in events {
            if case .connectionError(let error) = event { closeError = error }
            if case .closed = event { break }
        }
        return closeError
    }

    /// The receiver reads nothing for 7 s after the sender started closing (the association used to
    /// be aborted 5 s into its close, and the peer lost what was still queued), then gets every byte
    /// and the end; the sender's close completes without an error once the peer has it all.
    func testCloseDeliversEverythingToAPeerThatStartsReadingLate() async throws {
        let listener = try await SCTPLossTests.preconnection(local: .loopback()).listen()
        let client = SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port))
        async let senderCloseError = Self.sendAllThenClose(client)
        let accepted = try await listener.firstConnection()
        try await Task.sleep(for: .seconds(7))
        var received = 0
        while true {
            let message = try await accepted.receive()
            received += message.content.count
            if message.isFinal { break }
        }
        XCTAssertEqual(received, Self.count * Self.message.count)
        let closeError = try await senderCloseError
        XCTAssertNil(closeError)
        await listener.stop()
    }

    /// A receiver that never reads keeps the sender's close from progressing: after the stall limit
    /// the association is aborted, the sender's close ends with `timedOut`, and the receiver sees
    /// the reset after what had arrived.
    func testACloseThatMakesNoProgressIsAbortedAfterTheStallLimit() async throws {
        var server = SCTPLossTests.preconnection(local: .loopback())
        server.transport.sctp.closeStallLimit = .seconds(1)
        let listener = try await server.listen()
        var client = SCTPLossTests.preconnection(remote: .loopback(port: listener.localAddress.port))
        client.transport.sctp.closeStallLimit = .seconds(1)
        let closeError = try await Self.sendAllThenClose(client)
        XCTAssertEqual(closeError?.code, .timedOut, "the sender learns that its close did not complete")
        let accepted = try await listener.firstConnection()
        var received = 0
        let error = await XCTAssertThrowsTransportError(.connectionReset) {
            while true {
                let message = try await accepted.receive()
                received += message.content.count
                XCTAssertFalse(message.isFinal, "a stalled close must not end as if complete")
            }
        }
        // The sender's ABORT says why (its User-Initiated Abort cause carries the reason).
        XCTAssertTrue(error?.message.contains("the peer aborted the SCTP association: the SCTP association's close made no progress") == true,
                      String(describing: error))
        XCTAssertLessThan(received, Self.count * Self.message.count)
        await listener.stop()
    }
}
