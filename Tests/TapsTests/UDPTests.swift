import XCTest
@testable import Taps

final class UDPTests: XCTestCase {
    func testListenerDemultiplexesPeersIntoConnections() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        XCTAssertEqual(listener.stack.name, "udp")
        let echo = startEcho(listener)
        let remote = Endpoint.loopback(port: listener.localAddress.port)
        let first = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        let second = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        XCTAssertEqual(first.stack.name, "udp")
        for round in 0..<3 {
            try await first.send("first \(round)")
            try await second.send("second \(round)")
            let a = try await first.receive()
            let b = try await second.receive()
            // Datagrams keep their boundaries and go back to the right peer.
            XCTAssertTrue(a.isComplete)
            XCTAssertEqual(a.text, "first \(round)")
            XCTAssertEqual(b.text, "second \(round)")
        }
        await first.close()
        await second.close()
        await listener.stop()
        echo.cancel()
    }

    /// A stopped listener's established peers share its socket, so they keep talking; a new peer
    /// gets no connection.
    func testAStoppedListenersPeersGoOn() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        let echo = startEcho(listener)
        defer { echo.cancel() }
        let remote = Endpoint.loopback(port: listener.localAddress.port)
        let peer = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        let watchdog = abort(peer, after: .seconds(10))
        defer { watchdog.cancel() }
        try await peer.send("before")
        let before = try await peer.receive()
        XCTAssertEqual(before.text, "before")
        await listener.stop()
        try await peer.send("after")
        let after = try await peer.receive()
        XCTAssertEqual(after.text, "after", "the established peer is still served")
        let latecomer = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        try await latecomer.send("new")
        let unanswered = abort(latecomer, after: .milliseconds(300))
        await XCTAssertThrowsTransportError(.connectionClosed) { try await latecomer.receive() }  // aborted unanswered
        unanswered.cancel()
        await peer.close()
    }

    /// A listener's peer that goes silent (no close on UDP; an abort, so no close_notify, on DTLS):
    /// its connection ends with timedOut after incomingDatagramIdleTimeout, and the stopped
    /// listener then closes its socket, leaving nothing open on its loop.
    func testASilentPeersConnectionTimesOutAndTheStoppedListenerLeavesNothingOpen() async throws {
        let pki = TestPKI.shared
        for (server, client) in [(SecurityParameters.disabled, SecurityParameters.disabled), (pki.serverSecurity, pki.clientSecurity)] {
            let loop = EventLoop(name: "datagram-idle")
            defer { loop.shutdown() }
            var transport = TransportProperties.unreliableDatagram
            transport.incomingDatagramIdleTimeout = .milliseconds(300)
            let listener = try await Preconnection(local: .loopback(), transport: transport, security: server, loop: loop).listen()
            let peer = try await Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .unreliableDatagram,
                                               security: client).initiate(timeout: .seconds(5))
            try await peer.send("hello")
            let accepted = try await listener.firstConnection()
            let watchdog = abort(accepted, after: .seconds(10))  // a hang fails as `aborted`, not `timedOut`
            defer { watchdog.cancel() }
            let hello = try await accepted.receive()
            XCTAssertEqual(hello.text, "hello", listener.stack.name)
            await listener.stop()
            await peer.abort()  // silent from now on
            await XCTAssertThrowsTransportError(.timedOut) { try await accepted.receive() }
            var open = try await loop.openHandleCount()
            for _ in 0..<100 where open > 0 {
                try await Task.sleep(for: .milliseconds(20))
                open = try await loop.openHandleCount()
            }
            XCTAssertEqual(open, 0, "\(listener.stack.name): the stopped listener's socket closed after its last peer")
        }
    }

    func testRendezvousBetweenTwoPeers() async throws {
        // Learn two free UDP ports by binding listeners and stopping them.
        let probeA = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        let probeB = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        let (portA, portB) = (probeA.localAddress.port, probeB.localAddress.port)
        await probeA.stop()
        await probeB.stop()
        try await Task.sleep(for: .milliseconds(20))

        let a = try await Preconnection(local: .loopback(port: portA), remote: .loopback(port: portB),
                                        transport: .unreliableDatagram, security: .disabled).rendezvous()
        let b = try await Preconnection(local: .loopback(port: portB), remote: .loopback(port: portA),
                                        transport: .unreliableDatagram, security: .disabled).rendezvous()
        try await a.send("hello b")
        try await b.send("hello a")
        let atB = try await b.receive()
        let atA = try await a.receive()
        XCTAssertEqual(atB.text, "hello b")
        XCTAssertEqual(atA.text, "hello a")
        await a.close()
        await b.close()
    }

    /// A lossy path's reordering holds a datagram back behind the next one, but a lone datagram is
    /// only late (at most 10 ms), never lost: with every datagram "reordered", each still arrives.
    func testALoneReorderedDatagramIsLateNotLost() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .unreliableDatagram,
                                   security: .disabled)
        client.lossyPath = LossyPath(reorderRate: 1, seed: 9)
        let connection = try await client.initiate()
        try await connection.send("alone")
        let accepted = try await listener.firstConnection()
        let watchdog = abort(accepted, after: .seconds(5))
        defer { watchdog.cancel() }
        let first = try await accepted.receive()
        XCTAssertEqual(first.text, "alone")
        try await Task.sleep(for: .milliseconds(50))
        try await connection.send("later")
        let second = try await accepted.receive()
        XCTAssertEqual(second.text, "later")
        let counters = try await lossyCounters(of: connection)
        XCTAssertEqual(counters.reordered, 2)
        await connection.close()
        await listener.stop()
    }

    func testOversizedDatagramIsASendError() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port),
                                                 transport: .unreliableDatagram, security: .disabled).initiate()
        let limit = await connection.sendMsgMaxLen
        XCTAssertEqual(limit, 65_507)
        let events = await connection.events()
        // Refused at once (thrown) and reported as a sendError event.
        await XCTAssertThrowsTransportError(.messageTooLarge) { try await connection.send([UInt8](repeating: 1, count: 70_000)) }
        await connection.close()
        var sendErrors: [TransportError] = []
        for await event in events {
            if case .sendError(_, let error) = event { sendErrors.append(error) }
        }
        XCTAssertEqual(sendErrors.first?.code, .messageTooLarge)
        await listener.stop()
    }

    func testNewConnectionLimitRefusesFurtherPeers() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: .disabled)
            .listen(newConnectionLimit: 1)
        let remote = Endpoint.loopback(port: listener.localAddress.port)
        let first = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        let second = try await Preconnection(remote: remote, transport: .unreliableDatagram, security: .disabled).initiate()
        try await first.send("one")
        let accepted = try await listener.firstConnection()
        try await second.send("two")
        // Wait until the listener has seen the second peer's datagram.
        for _ in 0..<100 where await listener.refusedByLimit == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let refused = await listener.refusedByLimit
        XCTAssertEqual(refused, 1)
        await first.close()
        await second.close()
        await accepted.close()
        await listener.stop()
    }
}
