import Foundation
import XCTest
@testable import Taps

final class RacingTests: XCTestCase {
    func testHappyEyeballsOrderPutsIPv6First() {
        let v4a = SocketAddress(ip: "127.0.0.1", port: 1)!, v4b = SocketAddress(ip: "127.0.0.2", port: 1)!
        let v6a = SocketAddress(ip: "::1", port: 1)!
        XCTAssertEqual(Resolver.interleaveFamilies([v4a, v4b, v6a]), [v6a, v4a, v4b])
    }

    func testRefusedIPv6FallsBackToIPv4() async throws {
        // The listener is on 127.0.0.1 only; the ::1 candidate is tried first and refuses.
        let listener = try await Preconnection(local: .host("127.0.0.1", port: 0), security: .disabled).listen()
        let echo = startEcho(listener)
        var properties = TransportProperties.reliableInOrderStream
        properties.racingStagger = .seconds(5)  // the fallback must come from the failure, not the timer
        let started = ContinuousClock.now
        var preconnection = Preconnection(remote: .host("127.0.0.1", port: listener.localAddress.port),
                                          transport: properties, security: .disabled)
        preconnection.alternativeRemotes = [.host("::1", port: listener.localAddress.port)]
        let connection = try await preconnection.initiate()
        let remote = await connection.remoteAddress
        XCTAssertEqual(remote?.family, .ipv4)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        await connection.abort()
        await listener.stop()
        echo.cancel()
    }

    func testStaggeredAttemptWinsWhenTheFirstHangs() async throws {
        // On ::1 a plain TCP listener accepts but never answers the TLS ClientHello; on 127.0.0.1,
        // same port, a TLS server answers. The ::1 attempt starts first and hangs; the stagger timer
        // starts the IPv4 attempt, which wins, and the hanging attempt is aborted.
        let pki = TestPKI.shared
        let tls = try await Preconnection(local: .host("127.0.0.1", port: 0), security: pki.serverSecurity).listen()
        let silent = try await Preconnection(local: .host("::1", port: tls.localAddress.port), security: .disabled).listen()
        var properties = TransportProperties()
        properties.racingStagger = .milliseconds(50)
        let started = ContinuousClock.now
        var preconnection = Preconnection(remote: .host("127.0.0.1", port: tls.localAddress.port),
                                          transport: properties, security: pki.clientSecurity)
        preconnection.alternativeRemotes = [.host("::1", port: tls.localAddress.port)]
        let connection = try await preconnection.initiate()
        let remote = await connection.remoteAddress
        XCTAssertEqual(remote?.family, .ipv4)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        // The losing attempt reached the silent listener and was torn down.
        var silentConnections = silent.connections.makeAsyncIterator()
        let loser = await silentConnections.next()
        XCTAssertNotNil(loser, "the IPv6 attempt was started first")
        // It carried a ClientHello (TLS record type 22), then was reset when the other attempt won.
        let hello = try await loser?.receive()
        XCTAssertEqual(hello?.content.first, 22)
        var ended = false
        do { while !(try await loser!.receive().isFinal) {} ; ended = true } catch { ended = true }
        XCTAssertTrue(ended)
        await connection.abort()
        await tls.stop()
        await silent.stop()
    }

    func testOverallTimeoutIsReported() async throws {
        let silent = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let preconnection = Preconnection(remote: .loopback(port: silent.localAddress.port),
                                          security: TestPKI.shared.clientSecurity)
        let error = await XCTAssertThrowsTransportError(.timedOut) {
            try await preconnection.initiate(timeout: .milliseconds(200))
        }
        XCTAssertTrue(error?.message.contains("no candidate became ready") ?? false)
        await silent.stop()
    }
}
