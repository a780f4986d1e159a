import XCTest
@testable import Taps

/// RFC 9622 section 10: after `abort()` nothing more is received; a receive that was waiting throws
/// instead of looking like a clean end of stream.
final class AbortTests: XCTestCase {
    func testAPendingReceiveThrowsAfterAbortOnEveryStack() async throws {
        var sctp = TransportProperties.reliableMessage
        sctp.multistreaming = .require
        let cases: [(ProtocolStack, TransportProperties)] = [(.tcp, .reliableInOrderStream), (.sctp, sctp)]
        for (stack, transport) in cases {
            var server = Preconnection(local: .loopback(), transport: transport, security: .disabled)
            server.registry = StackRegistry(stacks: [stack])
            let listener = try await server.listen()
            var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: transport, security: .disabled)
            client.registry = StackRegistry(stacks: [stack])
            let connection = try await client.initiate(timeout: .seconds(10))
            try await connection.send("hello")
            let accepted = try await listener.firstConnection()
            let waiting = Task { try await connection.receive() }
            try await Task.sleep(for: .milliseconds(50))  // the receive is waiting
            await connection.abort()
            let outcome = await waiting.result
            switch outcome {
            case .success(let message):
                XCTFail("\(stack.name): a receive waiting across abort() returned \(message.content.count) bytes, final \(message.isFinal)")
            case .failure(let error):
                XCTAssertEqual((error as? TransportError)?.code, .connectionClosed, "\(stack.name): \(error)")
            }
            await accepted.abort()
            await listener.stop()
        }
    }
}

extension AbortTests {
    /// A cancelled receive throws CancellationError promptly and takes no message: the next
    /// receive gets what arrives afterwards (issue 16).
    func testCancelledReceiveThrowsAndLosesNoMessage() async throws {
        var sctp = TransportProperties.reliableMessage
        sctp.multistreaming = .require
        for (stack, transport) in [(ProtocolStack.tcp, TransportProperties.reliableInOrderStream), (.sctp, sctp)] {
            var server = Preconnection(local: .loopback(), transport: transport, security: .disabled)
            server.registry = StackRegistry(stacks: [stack])
            let listener = try await server.listen()
            var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: transport, security: .disabled)
            client.registry = StackRegistry(stacks: [stack])
            let connection = try await client.initiate(timeout: .seconds(10))
            try await connection.send("hello")
            let accepted = try await listener.firstConnection()
            let waiting = Task { try await connection.receive() }
            try await Task.sleep(for: .milliseconds(50))  // the receive is waiting
            let started = ContinuousClock.now
            waiting.cancel()
            let outcome = await waiting.result
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "\(stack.name): the cancelled receive returned promptly")
            XCTAssertThrowsError(try outcome.get(), "\(stack.name)") { XCTAssertTrue($0 is CancellationError, "\(stack.name): \($0)") }
            try await accepted.send("after the cancel")
            let next = try await receiveExactly(connection, count: 16)  // a byte stream may split it
            XCTAssertEqual(String(decoding: next, as: UTF8.self), "after the cancel", "\(stack.name): the next receive gets the message")
            await connection.abort()
            await accepted.abort()
            await listener.stop()
        }
    }
}
