import Foundation
import XCTest
@testable import Taps

/// A tcp or tls-tcp listener hands the connections it accepts to the loops of its group in turn,
/// where their handshakes and traffic run; a listener given a loop keeps them all on it.
final class AcceptSpreadTests: XCTestCase {
    static let pki = TestPKI.shared

    /// Accepts `count` connections from clients on `clientLoop`, echoes one message on each, and
    /// returns the loops the accepted connections run on, in order.
    private func acceptedLoops(_ server: Preconnection, security: SecurityParameters, count: Int,
                               clientLoop: EventLoop) async throws -> [EventLoop] {
        let listener = try await server.listen()
        var incoming = listener.connections.makeAsyncIterator()
        var loops: [EventLoop] = []
        for index in 0..<count {
            let client = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: security,
                                                 framer: LengthPrefixFramer(), loop: clientLoop).initiate(timeout: .seconds(5))
            let next = await incoming.next()
            let accepted = try XCTUnwrap(next)
            loops.append(accepted.loop)
            try await client.send("message \(index)")
            let received = try await accepted.receive()
            try await accepted.send(received.content)
            let echoed = try await client.receive()
            XCTAssertEqual(echoed.text, "message \(index)", "the connection accepted on \(accepted.loop.name) works")
            // Each end waits for the other's end of stream: both close at once.
            async let clientClosed: Void = client.close()
            async let serverClosed: Void = accepted.close()
            _ = await (clientClosed, serverClosed)
        }
        await listener.stop()
        let failed = await listener.failedEstablishments
        XCTAssertEqual(failed, 0)
        return loops
    }

    func testAcceptedConnectionsGoToEveryLoopOfTheGroupInTurn() async throws {
        let group = EventLoopGroup(loopCount: 3, name: "spread")
        let clientLoop = EventLoop(name: "spread-client")
        defer {
            group.shutdown()
            clientLoop.shutdown()
        }
        for (name, serverSecurity, clientSecurity) in [("tcp", SecurityParameters.disabled, SecurityParameters.disabled),
                                                        ("tls-tcp", Self.pki.serverSecurity, Self.pki.clientSecurity)] {
            var server = Preconnection(local: .loopback(), security: serverSecurity, framer: LengthPrefixFramer())
            server.eventLoopGroup = group
            let loops = try await acceptedLoops(server, security: clientSecurity, count: 6, clientLoop: clientLoop)
            let expected = (0..<6).map { ObjectIdentifier(group.loops[$0 % 3]) }
            XCTAssertEqual(loops.map(ObjectIdentifier.init), expected, "\(name): round robin over the group's loops")
        }
    }

    func testAListenerGivenALoopKeepsEveryConnectionOnIt() async throws {
        let loop = EventLoop(name: "single")
        let clientLoop = EventLoop(name: "single-client")
        defer {
            loop.shutdown()
            clientLoop.shutdown()
        }
        var server = Preconnection(local: .loopback(), security: Self.pki.serverSecurity, framer: LengthPrefixFramer(), loop: loop)
        server.eventLoopGroup = EventLoopGroup.shared  // ignored: the loop was chosen
        let loops = try await acceptedLoops(server, security: Self.pki.clientSecurity, count: 4, clientLoop: clientLoop)
        XCTAssertTrue(loops.allSatisfy { $0 === loop }, "\(loops.map(\.name))")
    }

    /// Handshakes that fail on the loops the connections were handed to are counted by the listener.
    func testFailedHandshakesOnOtherLoopsAreCounted() async throws {
        let group = EventLoopGroup(loopCount: 3, name: "spread-fail")
        defer { group.shutdown() }
        var server = Preconnection(local: .loopback(), security: Self.pki.serverSecurity)
        server.eventLoopGroup = group
        let listener = try await server.listen()
        var plain = Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled)
        plain.registry = StackRegistry(stacks: [.tcp])
        for _ in 0..<3 {
            let client = try await plain.initiate(timeout: .seconds(5))
            try await client.send("not a TLS ClientHello, just text\n")
            _ = try? await client.receive()  // the server's alert, then its end
            await client.abort()
        }
        let failed = try await listener.failedEstablishments(reaching: 3, within: .seconds(5))
        XCTAssertEqual(failed, 3)
        let reason = await listener.lastEstablishmentError
        XCTAssertEqual(reason?.code, .protocolViolation, "\(String(describing: reason))")
        await listener.stop()
    }
}
