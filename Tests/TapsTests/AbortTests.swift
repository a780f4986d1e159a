import XCTest
@testable import Taps

/// RFC 9622 section 10: after `abort()` nothing more is received; a receive that was waiting throws
/// instead of looking like a clean end of stream.
final class AbortTests: XCTestCase {
    /// tcp and sctp without security, each with the transport properties that select it.
    static var plainStacks: [(ProtocolStack, TransportProperties)] {
        var sctp = TransportProperties.reliableMessage
        sctp.multistreaming = .require
        return [(.tcp, .reliableInOrderStream), (.sctp, sctp)]
    }

    /// A listener on `stack`, a client connected to it that sent "hello", and the accepted side.
    static func connectedPair(_ stack: ProtocolStack, _ transport: TransportProperties) async throws -> (Listener, Connection, Connection) {
        var server = Preconnection(local: .loopback(), transport: transport, security: .disabled)
        server.registry = StackRegistry(stacks: [stack])
        let listener = try await server.listen()
        var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: transport, security: .disabled)
        client.registry = StackRegistry(stacks: [stack])
        let connection = try await client.initiate(timeout: .seconds(10))
        try await connection.send("hello")
        return (listener, connection, try await listener.firstConnection())
    }

    func testAPendingReceiveThrowsAfterAbortOnEveryStack() async throws {
        for (stack, transport) in Self.plainStacks {
            let (listener, connection, accepted) = try await Self.connectedPair(stack, transport)
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
        for (stack, transport) in Self.plainStacks {
            let (listener, connection, accepted) = try await Self.connectedPair(stack, transport)
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

extension AbortTests {
    /// A connection dropped without close() after its sends, with or without a final message,
    /// closes gracefully: the peer receives every byte `send()` accepted and a clean end (issue 16;
    /// only abort() discards).
    func testADroppedConnectionDeliversEverythingItAccepted() async throws {
        let pki = TestPKI.shared
        var sctp = TransportProperties.reliableMessage
        sctp.multistreaming = .require
        let cases: [(ProtocolStack, TransportProperties, SecurityParameters, SecurityParameters)] = [
            (.tcp, .reliableInOrderStream, .disabled, .disabled),
            (.tlsTCP, .reliableInOrderStream, pki.serverSecurity, pki.clientSecurity),
            (.sctp, sctp, .disabled, .disabled),
        ]
        let count = 200, size = 16_384
        for (stack, transport, serverSecurity, clientSecurity) in cases {
            var server = Preconnection(local: .loopback(), transport: transport, security: serverSecurity)
            server.registry = StackRegistry(stacks: [stack])
            let listener = try await server.listen()
            var client = Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: transport,
                                       security: clientSecurity)
            client.registry = StackRegistry(stacks: [stack])
            for round in 0..<6 {
                // Every other round the last message is final, which starts the send side's end.
                try await Self.sendAndDrop(client, count: count, size: size, lastIsFinal: round % 2 == 1)
                let accepted = try await listener.firstConnection()
                let watchdog = abort(accepted, after: .seconds(20))
                var received = 0, endedCleanly = false
                while true {
                    let message = try await accepted.receive()
                    received += message.content.count
                    if message.isFinal { endedCleanly = true; break }
                }
                watchdog.cancel()
                XCTAssertEqual(received, count * size, "\(stack.name) round \(round): every accepted byte arrived")
                XCTAssertTrue(endedCleanly, "\(stack.name) round \(round)")
                await accepted.close()
            }
            await listener.stop()
        }
    }

    /// Sends and lets the connection go without close(): its last reference ends here.
    private static func sendAndDrop(_ client: Preconnection, count: Int, size: Int, lastIsFinal: Bool) async throws {
        let connection = try await client.initiate(timeout: .seconds(10))
        for index in 0..<count {
            var properties = MessageProperties()
            properties.final = lastIsFinal && index == count - 1
            try await connection.send([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: size),
                                      context: MessageContext(properties: properties))
        }
    }
}

extension AbortTests {
    /// An abort after a final message, with megabytes still queued, reaches the peer as a reset: the
    /// peer never sees a clean end with bytes missing (issue 16: uv_tcp_close_reset is refused while
    /// the final message's shutdown is pending).
    func testAbortAfterAFinalMessageIsAResetNeverACleanShortEnd() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: .disabled).listen()
        let client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableInOrderStream, security: .disabled)
        let count = 400, size = 65_536
        var outcomes: [String] = []
        for _ in 0..<5 {
            let connection = try await client.initiate(timeout: .seconds(10))
            let accepted = try await listener.firstConnection()
            let reader = Task { () -> (bytes: Int, cleanEnd: Bool, error: TransportError?) in
                var bytes = 0
                do {
                    while true {
                        let message = try await accepted.receive()
                        bytes += message.content.count
                        if message.isFinal { return (bytes, true, nil) }
                        try await Task.sleep(for: .milliseconds(1))  // a slow reader: the sender's queue stays full
                    }
                } catch {
                    return (bytes, false, error as? TransportError)
                }
            }
            for index in 0..<count {
                var properties = MessageProperties()
                properties.final = index == count - 1
                try await connection.send([UInt8](repeating: 1, count: size), context: MessageContext(properties: properties))
            }
            await connection.abort()
            let result = await reader.value
            if result.cleanEnd {
                XCTAssertEqual(result.bytes, count * size, "a clean end must come after every byte")
                outcomes.append("complete")
            } else {
                XCTAssertEqual(result.error?.code, .connectionReset, "\(String(describing: result.error))")
                outcomes.append("reset")
            }
            await accepted.abort()
        }
        await listener.stop()
        XCTAssertTrue(outcomes.contains("reset"), "with megabytes queued, an abort is a reset: \(outcomes)")
    }
}
