import XCTest
@testable import Taps

/// The sctp stack against another SCTP-over-UDP implementation: usrsctp's own UDP encapsulation
/// (RFC 6951) in a separate process (`taps-sctp-peer`, IPv4 sockets, usrsctp's threads), which
/// checks our CRC32c and framing and speaks from its own stream ids and PPIDs.
final class SCTPInteropTests: XCTestCase {
    private func sctpPreconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil, remoteUDPPort: UInt16? = nil) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        transport.sctp.remoteUDPPort = remoteUDPPort
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: .disabled)
        preconnection.registry = StackRegistry(stacks: [.sctp])
        return preconnection
    }

    func testUsrsctpUDPEncapsulationPeerConnectsToOurListener() async throws {
        let listener = try await sctpPreconnection(local: .loopback()).listen()
        let port = listener.localAddress.port  // the SCTP port and, by default, the UDP port
        // Each stream the peer opens arrives as a connection; echo on it with the message's PPID.
        let echo = Task {
            for await connection in listener.connections {
                Task {
                    while let message = try? await connection.receive() {
                        var properties = MessageProperties()
                        properties.sctpPayloadProtocolIdentifier = message.context.properties.sctpPayloadProtocolIdentifier
                        try? await connection.send(message.content, context: MessageContext(properties: properties))
                    }
                }
            }
        }
        let peerUDPPort = try await freePort(udp: true)
        let peer = try ChildProcess(ChildProcess.product("taps-sctp-peer"),
                                    ["send", "\(peerUDPPort)", "\(port)", "\(port)", "alpha", "beta", "gamma"])
        let status = await peer.finish(timeout: 15)
        XCTAssertEqual(status, 0, peer.text)
        XCTAssertTrue(peer.text.contains("reply stream 0 ppid 50 alpha\n"), peer.text)
        XCTAssertTrue(peer.text.contains("reply stream 1 ppid 51 beta\n"), peer.text)
        XCTAssertTrue(peer.text.contains("reply stream 2 ppid 52 gamma\n"), peer.text)
        XCTAssertTrue(peer.text.hasSuffix("done\n"), peer.text)
        echo.cancel()
        await listener.stop()
    }

    func testOurClientTalksToAUsrsctpUDPEncapsulationPeer() async throws {
        let peerUDPPort = try await freePort(udp: true)
        let peerSCTPPort = try await freePort(udp: true)
        let peer = try ChildProcess(ChildProcess.product("taps-sctp-peer"), ["echo", "\(peerUDPPort)", "\(peerSCTPPort)"])
        defer { peer.terminate() }
        let ready = await peer.waitFor("ready")
        XCTAssertTrue(ready, peer.text)

        let client = sctpPreconnection(remote: .loopback(port: peerSCTPPort), remoteUDPPort: peerUDPPort)
        let first = try await client.initiate(timeout: .seconds(5))
        var properties = MessageProperties()
        properties.sctpPayloadProtocolIdentifier = 7
        try await first.send("one", context: MessageContext(properties: properties))
        let reply = try await first.receive()
        XCTAssertEqual(reply.text, "one")
        XCTAssertEqual(reply.context.properties.sctpPayloadProtocolIdentifier, 7)

        let second = try await first.clone()  // our next stream (2) of the same association
        properties.sctpPayloadProtocolIdentifier = 8
        let large = String(repeating: "x", count: 20_000)  // more than one 1280-byte packet
        try await second.send(large, context: MessageContext(properties: properties))
        let secondReply = try await second.receive()
        XCTAssertEqual(secondReply.text, large)
        XCTAssertEqual(secondReply.context.properties.sctpPayloadProtocolIdentifier, 8)
        XCTAssertTrue(peer.text.contains("got stream 0 ppid 7 one\n"), peer.text)
        XCTAssertTrue(peer.text.contains("got stream 2 ppid 8 xxx"), peer.text)

        await second.close()
        await first.close()
        let closed = await peer.waitFor("closed")
        XCTAssertTrue(closed, "the peer saw our SHUTDOWN: " + peer.text)
    }

    /// The peer dies without ABORT and starts again from the same address and ports: its INIT
    /// restarts the association (RFC 9260 section 5.2.4). The connection reports a softError and
    /// carries on with the new incarnation's messages.
    func testAPeerRestartIsASoftErrorAndTheConnectionGoesOn() async throws {
        let listener = try await sctpPreconnection(local: .loopback()).listen()
        let port = listener.localAddress.port
        let peerUDPPort = try await freePort(udp: true)
        let peerSCTPPort = try await freePort(udp: true)
        let arguments = ["hold", "\(peerUDPPort)", "\(port)", "\(port)", "\(peerSCTPPort)"]
        var incoming = listener.connections.makeAsyncIterator()

        let firstPeer = try ChildProcess(ChildProcess.product("taps-sctp-peer"), arguments + ["before"])
        defer { firstPeer.terminate() }
        let accepted = await incoming.next()
        let server = try XCTUnwrap(accepted)
        let events = EventLog()
        await server.setEventHandler { event in events.append(event) }
        let before = try await server.receive()
        XCTAssertEqual(before.text, "before")
        try await server.send("before")
        let holding = await firstPeer.waitFor("holding")
        XCTAssertTrue(holding, firstPeer.text)
        firstPeer.terminate()  // SIGKILL: no ABORT reaches us
        await firstPeer.finish()

        let secondPeer = try ChildProcess(ChildProcess.product("taps-sctp-peer"), arguments + ["after"])
        defer { secondPeer.terminate() }
        let after = try await server.receive()
        XCTAssertEqual(after.text, "after")
        try await server.send("after")
        let replied = await secondPeer.waitFor("reply stream 0 ppid 0 after")
        XCTAssertTrue(replied, secondPeer.text)
        let restarts = events.names.filter { $0.hasPrefix("softError") && $0.contains("restarted") }
        XCTAssertEqual(restarts.count, 1, "\(events.names)")
        await server.abort()
        await listener.stop()
    }
}
