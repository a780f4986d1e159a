import XCTest
@testable import Taps

final class TCPTests: XCTestCase {
    func testFramedMessagesEchoOverTCP() async throws {
        var server = Preconnection(local: .loopback(), transport: .reliableMessage, security: .disabled,
                                   framer: LengthPrefixFramer())
        let listener = try await server.listen()
        XCTAssertEqual(listener.stack.name, "tcp")
        let echo = startEcho(listener)
        server.local = nil

        let client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableMessage,
                                   security: .disabled, framer: LengthPrefixFramer())
        let connection = try await client.initiate()
        XCTAssertEqual(connection.stack.name, "tcp")
        let sizes = [0, 1, 5, 70_000, 300_000]
        for size in sizes {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertTrue(reply.isComplete)
            XCTAssertEqual(reply.content, payload, "message of \(size) bytes")
        }
        await connection.close()
        let state = await connection.state
        XCTAssertEqual(state, .closed)
        await listener.stop()
        echo.cancel()
    }

    func testByteStreamDeliversPartialMessagesAndFinal() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: .disabled).listen()
        let client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableInOrderStream, security: .disabled)
        let connection = try await client.initiate()
        let accepted = try await listener.firstConnection()

        let payload = [UInt8](repeating: 0xab, count: 1_000_000)
        try await connection.send(payload, context: MessageContext(properties: .final))
        var received: [UInt8] = []
        while true {
            let part = try await accepted.receive(minIncompleteLength: 1, maxLength: 100_000)
            XCTAssertLessThanOrEqual(part.content.count, 100_000)
            received += part.content
            if part.isFinal { break }
            XCTAssertFalse(part.isComplete)
        }
        XCTAssertEqual(received.count, payload.count)
        XCTAssertEqual(received, payload)
        // The sender half-closed; the receiver can still answer.
        try await accepted.send("bye")
        let reply = try await receiveBytes(connection, count: 3)
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "bye")
        await accepted.close()
        await connection.close()
        await listener.stop()
    }

    /// Plain TCP reads straight into the arrays it hands up; a short read is moved into an array of
    /// its own size, so a 5-byte message does not keep a 64 KB block alive.
    func testASmallMessageGetsAnArrayItsOwnSize() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port),
                                                 transport: .reliableInOrderStream, security: .disabled).initiate()
        let accepted = try await listener.firstConnection()
        try await connection.send("hello")
        let message = try await accepted.receive()
        XCTAssertEqual(String(decoding: message.content, as: UTF8.self), "hello")
        XCTAssertLessThan(message.content.capacity, 1024)
        await connection.abort()
        await accepted.abort()
        await listener.stop()
    }

    /// The pattern Docs/GettingStarted.md gives for a busy loop: a function isolated to the
    /// connection, in a task that prefers the connection's loop, runs there and takes every byte.
    func testIsolatedLoopOnTheConnectionsLoopReceivesEverything() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: .disabled).listen()
        let sender = Task {
            let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port),
                                                     transport: .reliableInOrderStream, security: .disabled).initiate()
            for _ in 0..<64 { try await connection.send([UInt8](repeating: 1, count: 16_384)) }
            try await connection.send([], context: MessageContext(properties: .final))
        }
        let accepted = try await listener.firstConnection()
        @Sendable func drain(_ connection: isolated Connection) async throws -> (total: Int, onLoop: Bool) {
            var total = 0, onLoop = true
            while true {
                let message = try await connection.receive()
                onLoop = onLoop && connection.loop.inEventLoop
                total += message.content.count
                if message.isFinal { return (total, onLoop) }
            }
        }
        let (total, onLoop) = try await Task(executorPreference: accepted.loop) { try await drain(accepted) }.value
        XCTAssertEqual(total, 64 * 16_384)
        XCTAssertTrue(onLoop)
        try await sender.value
        await accepted.close()
        await listener.stop()
    }

    /// 8 MB over a plain TCP byte stream: each read goes into its own array, made only after the
    /// reader took the one before, and reading pauses and resumes with the receive queue; every
    /// byte arrives, in order.
    func testBulkTransferArrivesIntactThroughFlowControl() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: .disabled).listen()
        try await assertBulkTransferIntact(from: Preconnection(remote: .loopback(port: listener.localAddress.port),
                                                               transport: .reliableInOrderStream, security: .disabled), to: listener)
        await listener.stop()
    }

    func testEventsReportReadySentAndClosed() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let echo = startEcho(listener)
        let events = await connection.events()
        let handled = EventLog()
        await connection.setEventHandler { handled.append($0) }
        try await connection.send("x")
        await connection.close()
        var seen: [String] = []
        for await event in events { seen.append("\(event)") }
        XCTAssertTrue(seen.contains { $0.hasPrefix("sent") }, "\(seen)")
        XCTAssertEqual(seen.last, "closed")
        XCTAssertEqual(handled.names.last, "closed")
        await listener.stop()
        echo.cancel()
    }

    func testPortInUseIsATypedError() async throws {
        let first = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let second = Preconnection(local: .loopback(port: first.localAddress.port), security: .disabled)
        let error = await XCTAssertThrowsTransportError(.addressInUse) { try await second.listen() }
        XCTAssertNotNil(error)
        await first.stop()
    }

    func testRefusedConnectionIsAnEstablishmentError() async throws {
        // Bind and stop a listener to learn a port nothing listens on.
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let port = listener.localAddress.port
        await listener.stop()
        let client = Preconnection(remote: .loopback(port: port), security: .disabled)
        _ = await XCTAssertThrowsTransportError(.connectionRefused) { try await client.initiate() }
    }

    func testPeerResetIsAConnectionError() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let accepted = try await listener.firstConnection()
        let events = await connection.events()
        await accepted.abort()
        var errors: [TransportError] = []
        for await event in events {
            if case .connectionError(let error) = event { errors.append(error) }
        }
        XCTAssertEqual(errors.first?.code, .connectionReset, "\(errors)")
        await listener.stop()
    }
}

/// Collects event names from a handler (called on the loop thread).
final class EventLog: @unchecked Sendable {
    // @unchecked Sendable: guarded by the lock.
    private let lock = NSLock()
    private var events: [String] = []
    func append(_ event: ConnectionEvent) { lock.withLock { events.append("\(event)") } }
    var names: [String] { lock.withLock { events } }
}

final class TCPOptionTests: XCTestCase {
    private func option(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, level, name, &value, &length)
        return value
    }

    func testConnectionPropertiesReachTheSocket() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        var properties = TransportProperties.reliableInOrderStream
        properties.keepAlive = .require
        properties.keepAliveTimeout = .seconds(7)
        properties.connTimeout = .milliseconds(4_500)
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), transport: properties,
                                                 security: .disabled).initiate()
        let maybeFD = await connection.tcpFileDescriptor
        let fd = try XCTUnwrap(maybeFD)
        XCTAssertEqual(option(fd, SOL_SOCKET, SO_KEEPALIVE), 1)
        XCTAssertEqual(option(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE), 7)
        XCTAssertEqual(option(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT), 4_500)
        XCTAssertEqual(option(fd, Int32(IPPROTO_TCP), TCP_NODELAY), 1)

        let plain = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let plainFD = await plain.tcpFileDescriptor
        XCTAssertEqual(option(try XCTUnwrap(plainFD), SOL_SOCKET, SO_KEEPALIVE), 0, "keep-alive is off unless asked for")
        await connection.abort()
        await plain.abort()
        await listener.stop()
    }
}
