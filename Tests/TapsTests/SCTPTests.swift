import Foundation
import XCTest
@testable import Taps

/// The sctp stack: usrsctp over UDP on loopback, streams as connections.
final class SCTPTests: XCTestCase {
    private func sctpPreconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil,
                                   configure: (inout TransportProperties) -> Void = { _ in }) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        configure(&transport)
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: .disabled)
        preconnection.registry = StackRegistry(stacks: [.sctp])
        return preconnection
    }

    private func listen(configure: (inout TransportProperties) -> Void = { _ in }) async throws -> Listener {
        try await sctpPreconnection(local: .loopback(), configure: configure).listen()
    }

    private func connect(_ port: UInt16, configure: (inout TransportProperties) -> Void = { _ in }) async throws -> Connection {
        try await sctpPreconnection(remote: .loopback(port: port), configure: configure).initiate(timeout: .seconds(5))
    }

    func testMultistreamingSelectsSCTPAndMessagesEcho() async throws {
        let chosen = Preconnection(remote: .loopback(port: 1), transport: {
            var transport = TransportProperties.reliableMessage
            transport.multistreaming = .require
            return transport
        }(), security: .disabled).candidateStacks().first { $0.rank == 0 }?.stack.name
        XCTAssertEqual(chosen, "sctp")

        let listener = try await listen()
        XCTAssertEqual(listener.stack.name, "sctp")
        let echo = startEcho(listener)
        let connection = try await connect(listener.localAddress.port)
        XCTAssertEqual(connection.stack.name, "sctp")
        for size in [1, 1000, 16_384, 1_000_000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertTrue(reply.isComplete)
            XCTAssertEqual(reply.content.count, size)
            XCTAssertEqual(reply.content, payload, "message of \(size) bytes")
        }
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testCloneOpensAStreamTheListenerSeesInTheSameGroup() async throws {
        let listener = try await listen()
        var incoming = listener.connections.makeAsyncIterator()
        let first = try await connect(listener.localAddress.port)
        try await first.send("on stream 0")
        let acceptedFirst = await incoming.next()
        let serverFirst = try XCTUnwrap(acceptedFirst)
        let firstMessage = try await serverFirst.receive()
        XCTAssertEqual(firstMessage.text, "on stream 0")

        let second = try await first.clone()
        XCTAssertEqual(first.group.count, 2)
        var properties = MessageProperties()
        properties.sctpPayloadProtocolIdentifier = 51
        try await second.send("on stream 2", context: MessageContext(properties: properties))
        let acceptedSecond = await incoming.next()
        let serverSecond = try XCTUnwrap(acceptedSecond)
        XCTAssertTrue(serverSecond.group === serverFirst.group, "a new stream joins its association's group")
        let secondMessage = try await serverSecond.receive()
        XCTAssertEqual(secondMessage.text, "on stream 2")
        XCTAssertEqual(secondMessage.context.properties.sctpPayloadProtocolIdentifier, 51)
        // Replies travel back on the same streams.
        try await serverSecond.send("back on 2")
        try await serverFirst.send("back on 0")
        let replySecond = try await second.receive()
        let replyFirst = try await first.receive()
        XCTAssertEqual(replySecond.text, "back on 2")
        XCTAssertEqual(replyFirst.text, "back on 0")

        // Closing one stream resets it; the peer's connection for it ends, the other stream goes on.
        await second.close()
        let end = try await serverSecond.receive()
        XCTAssertTrue(end.isFinal)
        try await first.send("still here")
        let still = try await serverFirst.receive()
        XCTAssertEqual(still.text, "still here")
        await serverSecond.close()
        await first.abort()
        await listener.stop()
    }
}
