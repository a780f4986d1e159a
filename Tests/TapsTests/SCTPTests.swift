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

    /// Stopping a listener ends accepting, not the associations it accepted: they share its UDP
    /// socket, which keeps receiving for them. Before, the socket went deaf at `stop()`, so a
    /// client's later SHUTDOWN never arrived and the server's streams waited forever.
    func testAStoppedListenersAssociationsGoOnAndEndCleanly() async throws {
        let listener = try await listen()
        var incoming = listener.connections.makeAsyncIterator()
        let client = try await connect(listener.localAddress.port)
        let second = try await client.clone()
        try await client.send("stream 0")
        try await second.send("stream 2")
        let accepted = [await incoming.next(), await incoming.next()]
        let servers = try accepted.map { try XCTUnwrap($0) }
        let watchdogs = servers.map { abort($0, after: .seconds(10)) }
        defer { watchdogs.forEach { $0.cancel() } }
        let greetings = try await [servers[0].receive().text, servers[1].receive().text]
        XCTAssertEqual(Set(greetings), ["stream 0", "stream 2"])
        await listener.stop()

        // Both directions still work on both streams.
        for (index, server) in servers.enumerated() {
            let clientSide = greetings[index] == "stream 0" ? client : second
            try await clientSide.send("after stop")
            let forward = try await server.receive()
            XCTAssertEqual(forward.text, "after stop")
            try await server.send("reply")
            let backward = try await clientSide.receive()
            XCTAssertEqual(backward.text, "reply")
        }
        // A new association is not accepted any more.
        await XCTAssertThrowsTransportError(.timedOut) {
            try await sctpPreconnection(remote: .loopback(port: listener.localAddress.port)).initiate(timeout: .milliseconds(500))
        }
        // The client ends one stream, then the association: each server stream sees its end.
        await client.close()
        await second.close()
        for server in servers {
            let end = try await server.receive()
            XCTAssertTrue(end.isFinal && end.content.isEmpty, "a clean end, not \(end)")
            await server.close()
        }
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

    func testEchoExampleOverSCTPWithASeparateUDPPort() async throws {
        let sctpPort = try await freePort(udp: true)
        let udpPort = try await freePort(udp: true)
        let server = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["listen", "--stack", "sctp", "--port", "\(sctpPort)", "--local-udp-port", "\(udpPort)"])
        defer { server.terminate() }
        let listening = await server.waitFor("listening on")
        XCTAssertTrue(listening, server.text)
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", "\(sctpPort)", "--stack", "sctp", "--udp-port", "\(udpPort)",
                                       "--message", "over sctp in udp"])
        let status = await client.finish()
        XCTAssertEqual(status, 0, client.text + server.text)
        XCTAssertTrue(client.text.contains("stack: sctp"), client.text)
        XCTAssertTrue(client.text.hasSuffix("over sctp in udp\n"), client.text)
    }
}

extension SCTPTests {
    func testSendingFromATaskOnTheSCTPLoop() async throws {
        let listener = try await listen()
        let echo = startEcho(listener)
        let client = sctpPreconnection(remote: .loopback(port: listener.localAddress.port))
        let message = { (index: Int) in [UInt8](repeating: UInt8(index & 0xff), count: 16_384) }
        let echoed = try await Task(executorPreference: listener.loop) { () -> [Int] in
            let connection = try await client.initiate(timeout: .seconds(5))
            for index in 0..<200 { try await connection.send(message(index)) }
            // Which message each reply is: the index it was filled with, or -1 if it is not one whole.
            var replies: [Int] = []
            while replies.count < 200 {
                let reply = try await connection.receive().content
                replies.append(reply == message(Int(reply.first ?? 0)) ? Int(reply.first ?? 0) : -1)
            }
            await connection.close()
            return replies
        }.value
        XCTAssertEqual(echoed, (0..<200).map { $0 & 0xff }, "each message comes back whole, in the order sent")
        await listener.stop()
        echo.cancel()
    }
}

extension SCTPTests {
    /// Queued messages still go out after `close()`, even once the connection object is gone.
    func testCloseDeliversEverythingQueuedBeforeTheShutdown() async throws {
        let listener = try await listen()
        let client = sctpPreconnection(remote: .loopback(port: listener.localAddress.port))
        let count = 400
        try await Task(executorPreference: listener.loop) {
            let connection = try await client.initiate(timeout: .seconds(5))
            for index in 0..<count {
                try await connection.send([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 16_384))
            }
            await connection.close()
        }.value
        let server = try await listener.firstConnection()
        let counting = Task {
            var received = 0
            while let message = try? await server.receive(), !(message.isFinal && message.content.isEmpty) {
                XCTAssertEqual(message.content.first, UInt8(truncatingIfNeeded: received))
                received += 1
            }
            return received
        }
        // A lost SHUTDOWN would leave the server waiting: end the connection after a while instead.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(20))
            await server.abort()
        }
        let received = await counting.value
        watchdog.cancel()
        XCTAssertEqual(received, count)
        await server.close()
        await listener.stop()
    }
}

extension SCTPTests {
    func testChatExampleRunsTopicsOnStreamsOfOneAssociation() async throws {
        let chat = try ChildProcess(ChildProcess.product("taps-chat"), ["--topics", "a,b,c,d", "--messages", "5"])
        let status = await chat.finish(timeout: 30)
        XCTAssertEqual(status, 0, chat.text)
        XCTAssertTrue(chat.text.contains("client: 4 streams in one association (group of 4) on sctp"), chat.text)
        XCTAssertTrue(chat.text.contains("delivered 20 of 20 messages"), chat.text)
    }

    func testChatExampleOnTLSStreams() async throws {
        let chat = try ChildProcess(ChildProcess.product("taps-chat"), ["--topics", "a,b,c", "--messages", "3", "--tls"])
        let status = await chat.finish(timeout: 30)
        XCTAssertEqual(status, 0, chat.text)
        XCTAssertTrue(chat.text.contains("client: 3 streams in one association (group of 3) on tls-sctp"), chat.text)
        XCTAssertTrue(chat.text.contains("TLS resumed): #b message 1"), "the second topic's stream resumed: \(chat.text)")
        XCTAssertTrue(chat.text.contains("delivered 9 of 9 messages"), chat.text)
    }

    func testRunningOutOfStreamsIsACloneError() async throws {
        let listener = try await listen { $0.sctp.streams = 3 }
        let first = try await connect(listener.localAddress.port) { $0.sctp.streams = 3 }
        let events = await first.events()
        // Streams 0 and 2 are the client's (even ids) within 3; a third does not fit.
        let second = try await first.clone()
        let error = await XCTAssertThrowsTransportError(.notSupported) { try await first.clone() }
        XCTAssertTrue(error?.message.contains("sctp.streams") == true, "\(String(describing: error))")
        await second.abort()
        await first.abort()
        var sawCloneError = false
        for await event in events {
            if case .cloneError = event { sawCloneError = true }
            if case .closed = event { break }
        }
        XCTAssertTrue(sawCloneError)
        await listener.stop()
    }
}

extension SCTPTests {
    func testAMessageOverTheReceiveLimitEndsTheAssociationWithAnError() async throws {
        let listener = try await listen { $0.sctp.maximumReceiveMessageSize = 100_000 }
        let client = try await connect(listener.localAddress.port)
        try await client.send([UInt8](repeating: 1, count: 1000))
        let server = try await listener.firstConnection()
        let small = try await server.receive()
        XCTAssertEqual(small.content.count, 1000)
        try await client.send([UInt8](repeating: 2, count: 300_000))
        await XCTAssertThrowsTransportError(.protocolViolation) { try await server.receive() }
        await client.abort()
        await listener.stop()
    }
}

extension SCTPTests {
    /// With minIncompleteLength, an 8 MB message reaches a receiver whose limit for whole messages
    /// is 1 MB: it comes in parts as it arrives, never buffered whole. A later receive without it
    /// gets a whole message again.
    func testALargeMessageArrivesInPartsWhenAskedFor() async throws {
        let listener = try await listen { $0.sctp.maximumReceiveMessageSize = 1_000_000 }
        let (client, server) = try await openStream(on: listener)

        await server.setReceiveMode(.pull, minIncompleteLength: 65_536)  // asks before the data comes
        let parts = Task { () -> [Message] in
            var parts: [Message] = []
            repeat {
                parts.append(try await server.receive(minIncompleteLength: 65_536))
            } while !parts.last!.isComplete
            return parts
        }
        let payload = (0..<8_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 12)) }
        var properties = MessageProperties()
        properties.sctpPayloadProtocolIdentifier = 53
        try await client.send(payload, context: MessageContext(properties: properties))
        try await client.send("after")
        let received = try await parts.value
        XCTAssertGreaterThan(received.count, 2)
        XCTAssertTrue(received.allSatisfy(\.isPart))
        XCTAssertTrue(received.dropLast().allSatisfy { !$0.isComplete && $0.content.count >= 65_536 })
        XCTAssertTrue(received.allSatisfy { $0.context.properties.sctpPayloadProtocolIdentifier == 53 })
        XCTAssertEqual(received.flatMap(\.content), payload)

        let after = try await server.receive()
        XCTAssertEqual(after.text, "after")
        XCTAssertTrue(after.isComplete)
        XCTAssertFalse(after.isPart)
        await client.close()
        await listener.stop()
    }

    /// In event mode the parts are receivedPartial events; the last one carries isComplete.
    func testPartsAreReceivedPartialEventsInEventMode() async throws {
        let listener = try await listen()
        let (client, server) = try await openStream(on: listener)

        let events = await server.events()
        await server.setReceiveMode(.events, minIncompleteLength: 100_000)
        let payload = [UInt8](repeating: 0x42, count: 3_000_000)
        try await client.send(payload)
        var received = 0
        var partials = 0
        for await event in events {
            guard case .receivedPartial(let part) = event else {
                if case .received = event { XCTFail("a part arrived as a whole message") }
                continue
            }
            partials += 1
            received += part.content.count
            if part.isComplete { break }
        }
        XCTAssertGreaterThan(partials, 2)
        XCTAssertEqual(received, payload.count)
        await client.close()
        await listener.stop()
    }

    /// A client connection to `listener` and the server's side of it, after a first message.
    private func openStream(on listener: Listener) async throws -> (client: Connection, server: Connection) {
        let client = try await connect(listener.localAddress.port)
        return (client, try await acceptStream(of: client, on: listener, opening: "opens the stream"))
    }

    /// Sends `text` as the first message on `client`'s new stream and returns the server's side of
    /// that stream, checking that `text` arrived first.
    private func acceptStream(of client: Connection, on listener: Listener, opening text: String) async throws -> Connection {
        try await client.send(text)
        let server = try await listener.firstConnection()
        let first = try await server.receive()
        XCTAssertEqual(first.text, text)
        return server
    }
}

/// Abort and close of one connection, or of the whole group, on an association with two streams
/// (RFC 9622 section 10, RFC 9623 section 5.3).
extension SCTPTests {
    /// The client's two connections (streams 0 and 2) and the server's sides of them.
    private func twoStreams(on listener: Listener) async throws -> (a: Connection, b: Connection, serverA: Connection, serverB: Connection) {
        let (a, serverA) = try await openStream(on: listener)
        let b = try await a.clone()
        let serverB = try await acceptStream(of: b, on: listener, opening: "on b")
        return (a, b, serverA, serverB)
    }

    func testAbortingOneOfSeveralStreamsEndsOnlyThatStream() async throws {
        let listener = try await listen()
        let (a, b, serverA, serverB) = try await twoStreams(on: listener)
        await b.abort()
        // The peer sees the stream end (a reset), not an ABORT.
        let end = try await serverB.receive()
        XCTAssertTrue(end.isFinal && end.content.isEmpty)
        try await a.send("a goes on")
        let onA = try await serverA.receive()
        XCTAssertEqual(onA.text, "a goes on")
        try await serverA.send("both ways")
        let back = try await a.receive()
        XCTAssertEqual(back.text, "both ways")
        // Dropping a connection without closing it aborts it: again only its stream.
        await serverB.abort()
        try await a.send("still")
        let still = try await serverA.receive()
        XCTAssertEqual(still.text, "still")
        await a.abort()  // the last stream: ABORT
        await XCTAssertThrowsTransportError(.connectionReset) { try await serverA.receive() }
        await listener.stop()
    }

    func testAbortGroupSendsOneAbortForTheAssociation() async throws {
        let listener = try await listen()
        let (a, b, serverA, serverB) = try await twoStreams(on: listener)
        await a.abortGroup()
        let bCanSend = await b.canSend
        XCTAssertFalse(bCanSend, "the clone is aborted with its group")
        XCTAssertEqual(a.group.count, 0)
        await XCTAssertThrowsTransportError(.connectionReset) { try await serverA.receive() }
        await XCTAssertThrowsTransportError(.connectionReset) { try await serverB.receive() }
        await listener.stop()
    }

    func testCloseGroupClosesEveryStreamGracefully() async throws {
        let listener = try await listen()
        let (a, b, serverA, serverB) = try await twoStreams(on: listener)
        try await b.send("last on b")
        try await a.send("last on a")
        await a.closeGroup()
        let bCanSend = await b.canSend
        XCTAssertFalse(bCanSend)
        for (server, last) in [(serverA, "last on a"), (serverB, "last on b")] {
            let message = try await server.receive()
            XCTAssertEqual(message.text, last, "queued data arrives before the close")
            let end = try await server.receive()
            XCTAssertTrue(end.isFinal && end.content.isEmpty)
        }
        await listener.stop()
    }
}
