import Foundation
import XCTest
@testable import Taps

/// The tls-sctp stack (RFC 3436): a TLS connection on each bidirectional SCTP stream.
final class TLSSCTPTests: XCTestCase {
    func testEchoOverAStreamIsTLSOverSCTP() async throws {
        let listener = try await TLSSCTP.listener()
        XCTAssertEqual(listener.stack.name, "tls-sctp")
        let echo = startEcho(listener)
        let connection = try await TLSSCTP.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        XCTAssertEqual(connection.stack.name, "tls-sctp")
        let details = try await securityDetails(of: connection)
        XCTAssertEqual(details.protocolVersion, "TLSv1.3")
        XCTAssertFalse(details.resumed)
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try await connection.send(payload)
        let reply = try await receiveBytes(connection, count: payload.count)
        XCTAssertTrue(reply == payload, "100,000 bytes (7 records) come back intact")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    /// Section 5.2 on TLS 1.2, with session tickets and with session ids (the server issuing no
    /// tickets): the first stream does a full handshake, the others an abbreviated one.
    func testResumeFirstOnTLS12WithTicketsAndSessionIDs() async throws {
        for tickets in [true, false] {
            var server = TLSSCTP.pki.serverSecurity
            server.allowedVersions = [.tls12]
            server.sessionTickets = tickets
            let listener = try await TLSSCTP.listener(security: server)
            let (clients, servers) = try await TLSSCTP.openStreams(4, from: TLSSCTP.client(listener.localAddress.port), to: listener)
            let clientResumed = try await clients.asyncMap { try await resumed($0) }
            let serverResumed = try await (0..<4).asyncMap { try await resumed(try XCTUnwrap(servers[$0])) }
            XCTAssertEqual(clientResumed, [false, true, true, true], "TLS 1.2, tickets \(tickets), client side")
            XCTAssertEqual(serverResumed, [false, true, true, true], "TLS 1.2, tickets \(tickets), server side")
            let version = try await securityDetails(of: clients[3]).protocolVersion
            XCTAssertEqual(version, "TLSv1.2")
            for connection in clients { await connection.abort() }
            await listener.stop()
        }
    }

    /// Section 5.1: every stream does a full handshake; 5.2: the first does, the others resume its
    /// session; both ends agree on which did which.
    func testParallelAndResumeFirstPatterns() async throws {
        for (pattern, count) in [(SCTPOptions.TLSHandshakes.parallel, 2), (.parallel, 16), (.resumeFirst, 2), (.resumeFirst, 16)] {
            let listener = try await TLSSCTP.listener()
            let client = TLSSCTP.client(listener.localAddress.port) { $0.sctp.tlsHandshakes = pattern }
            let (clients, servers) = try await TLSSCTP.openStreams(count, from: client, to: listener)
            let expected = (0..<count).map { pattern == .resumeFirst && $0 > 0 }
            let clientResumed = try await clients.asyncMap { try await resumed($0) }
            let serverResumed = try await (0..<count).asyncMap { try await resumed(try XCTUnwrap(servers[$0])) }
            XCTAssertEqual(clientResumed, expected, "\(pattern) with \(count) streams, client side")
            XCTAssertEqual(serverResumed, expected, "\(pattern) with \(count) streams, server side")
            for connection in clients { await connection.abort() }
            await listener.stop()
        }
    }
}

extension TLSSCTPTests {
    /// Section 5.3: a cloned stream's handshake waits for its first write; what it sends meanwhile
    /// waits for the handshake and never crosses the wire in clear.
    func testDelayedPatternHandshakesOnFirstSendAndNothingLeavesInClear() async throws {
        for count in [2, 16] {
            let listener = try await TLSSCTP.listener()
            var client = TLSSCTP.client(listener.localAddress.port) { $0.sctp.tlsHandshakes = .delayed }
            client.lossyPath = LossyPath()  // no faults: it shows what this end writes
            let first = try await client.initiate(timeout: .seconds(10))
            let wire = try await watchWire(of: first)
            var clones: [Connection] = []
            for _ in 1..<count { clones.append(try await first.clone()) }
            try await Task.sleep(for: .milliseconds(50))
            let detailsBeforeUse = await clones.asyncMap { await $0.securityDetails }
            XCTAssertTrue(detailsBeforeUse.allSatisfy { $0 == nil }, "no clone has done a handshake before it is used")
            XCTAssertFalse(wire.contains(Array("localhost".utf8)), "no ClientHello (its SNI is in clear) went out for an unused stream")

            let secret = Array("a secret the wire must never show".utf8)
            for (index, connection) in ([first] + clones).enumerated() {
                try await connection.send(Array(TLSSCTP.greeting(index).utf8) + secret)
            }
            let servers = try await TLSSCTP.acceptStreams(count, on: listener)
            for index in 0..<count {
                let server = try XCTUnwrap(servers[index])
                let rest = try await receiveBytes(server, count: secret.count)
                XCTAssertEqual(rest, secret, "stream \(index) delivers what was sent before its handshake")
            }
            XCTAssertTrue(wire.contains(Array("localhost".utf8)), "the clones' ClientHellos went out once they were used")
            XCTAssertFalse(wire.contains(secret), "no application byte crossed the wire in clear")
            let clonesResumed = try await clones.asyncMap { try await resumed($0) }
            XCTAssertEqual(clonesResumed, Array(repeating: true, count: count - 1), "the clones resumed the first stream's session")
            for connection in [first] + clones { await connection.abort() }
            await listener.stop()
        }
    }

    /// Section 5.4: with a session from an earlier association, no stream does a full handshake.
    func testALaterAssociationResumesOnEveryStream() async throws {
        for count in [2, 16] {
            let listener = try await TLSSCTP.listener()
            let client = TLSSCTP.client(listener.localAddress.port) { $0.sctp.tlsHandshakes = .parallel }
            let earlier = try await client.initiate(timeout: .seconds(10))
            try await earlier.send(TLSSCTP.greeting(0))
            let accepted = try await TLSSCTP.acceptStreams(1, on: listener)
            let earlierServer = try XCTUnwrap(accepted[0])
            try await earlierServer.send("bye")
            _ = try await receiveBytes(earlier, count: 3)  // the session ticket came before this
            await earlier.close()
            await earlierServer.close()

            let (clients, servers) = try await TLSSCTP.openStreams(count, from: client, to: listener)
            let clientResumed = try await clients.asyncMap { try await resumed($0) }
            let serverResumed = try await (0..<count).asyncMap { try await resumed(try XCTUnwrap(servers[$0])) }
            XCTAssertEqual(clientResumed, Array(repeating: true, count: count), "client side, \(count) streams")
            XCTAssertEqual(serverResumed, Array(repeating: true, count: count), "server side, \(count) streams")
            for connection in clients { await connection.abort() }
            await listener.stop()
        }
    }

    /// Section 5.2: streams that resume their own association's session get no tickets of their own
    /// (the client offers that session on each stream), while streams resuming a session from an
    /// earlier association still get one each, so a client need not reuse a ticket across
    /// associations.
    func testOnlyResumptionsFromAnotherAssociationGetNewTickets() async throws {
        let listener = try await TLSSCTP.listener()
        let cache = TLSSessionCache()
        var security = TLSSCTP.pki.clientSecurity
        security.sessionCache = cache
        let client = TLSSCTP.client(listener.localAddress.port, security: security)  // resumeFirst

        func openAndAwaitTickets(_ count: Int, resuming expected: [Bool]) async throws -> [Connection] {
            let (clients, servers) = try await TLSSCTP.openStreams(count, from: client, to: listener)
            for index in 0..<count { try await XCTUnwrap(servers[index]).send("ok") }
            // A ticket follows its handshake, so it has been read once the reply has.
            for connection in clients { _ = try await receiveBytes(connection, count: 2) }
            let resumedStreams = try await clients.asyncMap { try await resumed($0) }
            XCTAssertEqual(resumedStreams, expected, "the streams that resumed")
            return clients
        }
        let first = try await openAndAwaitTickets(4, resuming: [false, true, true, true])
        XCTAssertEqual(cache.sessionsStored, 2, "the full handshake's two tickets, none for the three streams that resumed them")
        for connection in first { await connection.close() }

        let later = try await openAndAwaitTickets(3, resuming: [true, true, true])  // section 5.4
        XCTAssertEqual(cache.sessionsStored, 2 + 3, "one ticket for each stream resuming the earlier association's session")
        for connection in later { await connection.abort() }
        await listener.stop()
    }

    /// Section 4.3.2: TLS records are never sent unordered, with a lifetime or unreliably.
    func testUnorderedLifetimeAndUnreliableMessagesAreSendErrors() async throws {
        let listener = try await TLSSCTP.listener()
        let echo = startEcho(listener)
        let connection = try await TLSSCTP.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        let events = await connection.events()
        var unordered = MessageProperties(), expiring = MessageProperties(), unreliable = MessageProperties()
        unordered.ordered = false
        expiring.lifetime = .seconds(1)
        unreliable.reliable = false
        for properties in [unordered, expiring, unreliable] {
            let error = await XCTAssertThrowsTransportError(.notSupported) {
                try await connection.send("never", context: MessageContext(properties: properties))
            }
            XCTAssertTrue(error?.message.contains("RFC 3436 section 4.3.2") ?? false, "\(String(describing: error))")
        }
        var sendErrors = 0
        for await event in events {
            if case .sendError = event { sendErrors += 1 }
            if sendErrors == 3 { break }
        }
        try await connection.send("ordered")
        let reply = try await receiveBytes(connection, count: 7)
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "ordered", "the connection goes on")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    /// A peer that sends TLS data unordered breaks that stream's TLS (section 4.3.2): that connection
    /// fails with a protocol violation, the association's other streams carry on.
    func testTLSDataArrivingUnorderedFailsThatStreamOnly() async throws {
        let listener = try await TLSSCTP.listener()
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: TLSSCTP.client(listener.localAddress.port), to: listener)
        let victim = try XCTUnwrap(servers[1])
        let victimEvents = await victim.events()
        // A record-like message sent unordered on stream 1, below TLS.
        let unordered = { var properties = MessageProperties(); properties.ordered = false; return properties }()
        try await clients[1].loop.submit {
            clients[1].assumeIsolated { connection in
                let stream = connection.layer.layerChain.first { $0 is SCTPStreamLayer }
                stream?.write([23, 3, 3, 0, 1, 0], properties: unordered, completion: nil)
            }
        }
        var failure: TransportError?
        for await event in victimEvents {
            if case .connectionError(let error) = event { failure = error; break }
        }
        XCTAssertEqual(failure?.code, .protocolViolation, "\(String(describing: failure))")
        XCTAssertTrue(failure?.message.contains("RFC 3436") ?? false)
        let survivor = try XCTUnwrap(servers[0])
        try await clients[0].send("still here")
        let text = try await receiveBytes(survivor, count: 10)
        XCTAssertEqual(String(decoding: text, as: UTF8.self), "still here")
        for connection in clients { await connection.abort() }
        await listener.stop()
    }
}

/// Whether `connection`'s TLS handshake resumed a session; fails the test when it has no security details.
func resumed(_ connection: Connection, file: StaticString = #filePath, line: UInt = #line) async throws -> Bool {
    try await securityDetails(of: connection, file: file, line: line).resumed
}

func securityDetails(of connection: Connection, file: StaticString = #filePath, line: UInt = #line) async throws -> SecurityDetails {
    let details = await connection.securityDetails
    return try XCTUnwrap(details, "the connection has no security details", file: file, line: line)
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

extension TLSSCTPTests {
    /// The group operations SCTP implements reach it through the TLS layer: connPriority becomes the
    /// stream's priority, and abortGroup ABORTs the association, ending every stream.
    func testPriorityAndAbortGroupReachTheAssociation() async throws {
        let listener = try await TLSSCTP.listener()
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: TLSSCTP.client(listener.localAddress.port), to: listener)
        await clients[1].setConnPriority(7)
        let priority = try await clients[1].loop.submit {
            clients[1].assumeIsolated { connection -> Int? in
                let stream = connection.layer.layerChain.lazy.compactMap { $0 as? SCTPStreamLayer }.first
                return stream.flatMap { $0.association.priority(of: $0.streamID) }
            }
        }
        XCTAssertEqual(priority, 7, "the stream under TLS got the connection's priority")
        let other = try XCTUnwrap(servers[0])
        let events = await other.events()
        let watchdog = abort(other, after: .seconds(10))  // an `aborted` error then fails the check below
        defer { watchdog.cancel() }
        await clients[1].abortGroup()
        var failure: TransportError?
        for await event in events {
            if case .connectionError(let error) = event { failure = error; break }
        }
        XCTAssertEqual(failure?.code, .connectionReset, "the other stream's peer saw the association's ABORT: \(String(describing: failure))")
        let firstState = await clients[0].state
        XCTAssertEqual(firstState, .closed, "abortGroup closed every connection of the group")
        await listener.stop()
    }
}

extension TLSSCTPTests {
    /// Section 4.3.1: a stream may carry plain SCTP user data, only when both ends ask for it: the
    /// client with `clone(security: .disabled)`, the listener with `sctp.plainStreams`. Such a
    /// connection reports the sctp stack and no security; without the listener's consent the stream
    /// fails alone.
    func testPlainStreamsOnlyWhenBothEndsAskForThem() async throws {
        for listenerAllows in [true, false] {
            let listener = try await TLSSCTP.listener { $0.sctp.plainStreams = listenerAllows }
            var client = TLSSCTP.client(listener.localAddress.port)
            client.lossyPath = LossyPath()
            let (clients, servers) = try await TLSSCTP.openStreams(1, from: client, to: listener)
            let wire = try await watchWire(of: clients[0])
            await XCTAssertThrowsTransportError(.invalidArgument) { try await clients[0].clone(security: TLSSCTP.pki.clientSecurity) }
            let plain = try await clients[0].clone(security: .disabled)
            XCTAssertEqual(plain.stack.name, "sctp")
            let plainDetails = await plain.securityDetails
            XCTAssertNil(plainDetails, "a plain stream reports no security")
            let words = Array("plain words on stream 2".utf8)
            try await plain.send(words)
            if listenerAllows {
                let accepted = try await listener.firstConnection()
                XCTAssertEqual(accepted.stack.name, "sctp")
                let acceptedDetails = await accepted.securityDetails
                XCTAssertNil(acceptedDetails)
                let message = try await accepted.receive()
                XCTAssertEqual(message.content, words)
            } else {
                let failures = try await listener.failedEstablishments(within: .seconds(2))
                XCTAssertEqual(failures, 1, "the plain stream failed as TLS")
                let error = await listener.lastEstablishmentError
                XCTAssertEqual(error?.code, .protocolViolation, "\(String(describing: error))")
            }
            XCTAssertTrue(wire.contains(words), "plain SCTP user data is in clear on the wire, as asked")
            try await clients[0].send("tls goes on")
            let text = try await receiveExactly(try XCTUnwrap(servers[0]), count: 11)
            XCTAssertEqual(String(decoding: text, as: UTF8.self), "tls goes on")
            await clients[0].abortGroup()
            await listener.stop()
        }
    }
}

extension TLSSCTPTests {
    /// taps-echo both ways on tls-sctp, through a UDP port apart from the SCTP port: the client
    /// prints each stream's TLS version, cipher, whether it resumed, and the reply.
    func testEchoExampleOnSeveralStreams() async throws {
        let pki = TLSSCTP.pki
        let sctpPort = try await freePort(udp: true)
        let udpPort = try await freePort(udp: true)
        let server = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["listen", "--stack", "tls-sctp", "--port", "\(sctpPort)", "--local-udp-port", "\(udpPort)",
                                       "--cert", pki.serverCert, "--key", pki.serverKey])
        defer { server.terminate() }
        let listening = await server.waitFor("listening on")
        XCTAssertTrue(listening, server.text)
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "localhost", "\(sctpPort)", "--stack", "tls-sctp", "--udp-port", "\(udpPort)",
                                       "--ca", pki.caPEM, "--streams", "3", "--message", "per stream"])
        let status = await client.finish()
        XCTAssertEqual(status, 0, client.text + server.text)
        for (index, resumed) in ["no", "yes", "yes"].enumerated() {
            let line = client.text.split(separator: "\n").first { $0.hasPrefix("stream \(index): ") } ?? ""
            XCTAssertTrue(line.hasPrefix("stream \(index): TLSv1.3, TLS_"), client.text)
            XCTAssertTrue(line.hasSuffix("resumed: \(resumed), reply: per stream (stream \(index))"), client.text)
        }
    }
}

extension TLSSCTPTests {
    /// Section 4.4: TLS runs on bidirectional streams only. With a listener that has fewer outgoing
    /// streams than the client, the client's higher streams have no partner back: a clone there
    /// fails at once, naming the section, and the streams with a partner go on.
    func testATLSStreamWithoutAPartnerBackIsRefused() async throws {
        let listener = try await TLSSCTP.listener { $0.sctp.outboundStreams = 2 }
        let first = try await TLSSCTP.client(listener.localAddress.port).initiate(timeout: .seconds(10))
        try await first.send(TLSSCTP.greeting(0))
        let accepted = try await TLSSCTP.acceptStreams(1, on: listener)
        // Stream 2, the client's next even id, has no stream 2 back from the server.
        let error = await XCTAssertThrowsTransportError(.protocolViolation) { try await first.clone() }
        XCTAssertTrue(error?.message.contains("RFC 3436 section 4.4") ?? false, "\(String(describing: error))")
        try await first.send("still here")
        let text = try await receiveExactly(try XCTUnwrap(accepted[0]), count: 10)
        XCTAssertEqual(String(decoding: text, as: UTF8.self), "still here", "the stream with a partner goes on")
        await first.abort()
        await listener.stop()
    }
}
