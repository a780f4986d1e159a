import Foundation
import XCTest
@testable import Taps

/// Racing over real sockets; the timing rules themselves are tested on a virtual clock in
/// RaceStateMachineTests.
final class RacingTests: XCTestCase {
    func testRefusedIPv6FallsBackToIPv4() async throws {
        // The listener is on 127.0.0.1 only; the ::1 candidate is tried first and refuses.
        let listener = try await Preconnection(local: .host("127.0.0.1", port: 0), security: .disabled).listen()
        let echo = startEcho(listener)
        var properties = TransportProperties.reliableInOrderStream
        properties.racingStagger = .seconds(60)  // the fallback must come from the failure, not the timer
        var preconnection = Preconnection(remote: .host("127.0.0.1", port: listener.localAddress.port),
                                          transport: properties, security: .disabled)
        preconnection.alternativeRemotes = [.host("::1", port: listener.localAddress.port)]
        let connection = try await preconnection.initiate(timeout: .seconds(20))
        let remote = await connection.remoteAddress
        XCTAssertEqual(remote?.family, .ipv4)
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
        var preconnection = Preconnection(remote: .host("127.0.0.1", port: tls.localAddress.port),
                                          transport: properties, security: pki.clientSecurity)
        preconnection.alternativeRemotes = [.host("::1", port: tls.localAddress.port)]
        let connection = try await preconnection.initiate()
        let remote = await connection.remoteAddress
        XCTAssertEqual(remote?.family, .ipv4)
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

    /// RFC 6761 section 6.3: a per-family query for localhost is answered from the hosts file for
    /// both families, never sent on to DNS (which a hosts file defining only 127.0.0.1 would cause
    /// for the IPv6 query): the IPv6 query succeeds, with only IPv6 addresses, possibly none.
    func testLocalhostIsLookedUpPerFamilyWithoutDNS() async throws {
        let loop = EventLoopGroup.shared.next()
        for name in ["localhost", "LOCALHOST", "taps.localhost"] {
            XCTAssertTrue(Resolver.isLocalhostName(name))
        }
        XCTAssertFalse(Resolver.isLocalhostName("localhost.example"))
        func lookUp(_ family: SocketAddress.Family) async throws -> [SocketAddress] {
            try await withCheckedThrowingContinuation { continuation in
                loop.execute {
                    Resolver.resolve("localhost", port: 7, family: family, on: loop) { continuation.resume(with: $0) }
                }
            }
        }
        let ipv4 = try await lookUp(.ipv4), ipv6 = try await lookUp(.ipv6)
        XCTAssertTrue(ipv4.contains(SocketAddress(ip: "127.0.0.1", port: 7)!))
        XCTAssertTrue(ipv4.allSatisfy { $0.family == .ipv4 })
        XCTAssertTrue(ipv6.allSatisfy { $0.family == .ipv6 })
    }

    /// A lookup withdrawn at once, queued or already running on libuv's thread pool, completes
    /// exactly once (a cancelled one as a failure) and leaves nothing behind, 200 times over.
    func testAWithdrawnLookupCompletesOnce() async throws {
        let loop = EventLoop(name: "withdrawn-lookups")
        defer { loop.shutdown() }
        let completions = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[Int], any Error>) in
            loop.execute {
                var counts = Array(repeating: 0, count: 200)
                var outstanding = counts.count
                for index in counts.indices {
                    let lookup = Resolver.resolve("localhost", port: 7, family: .ipv4, on: loop) { _ in
                        counts[index] += 1
                        outstanding -= 1
                        if outstanding == 0 { continuation.resume(returning: counts) }
                    }
                    lookup?.cancel()
                }
            }
        }
        XCTAssertEqual(completions, Array(repeating: 1, count: 200))
        var open = try await loop.openHandleCount()
        for _ in 0..<50 where open > 0 {
            try await Task.sleep(for: .milliseconds(20))
            open = try await loop.openHandleCount()
        }
        XCTAssertEqual(open, 0)
    }

    /// A race led by tls-tcp (secure messages with a framer, where tls-sctp qualifies too) races the
    /// same candidates whichever loop of the shared group it lands on: the SCTP loop is one of them,
    /// and a race that landed there used to add tls-sctp, whose attempt at a TCP-only port hung
    /// until the timeout after tls-tcp had failed with the real reason. Every initiate here, across
    /// every loop of the round robin, fails at once with `certificateRejected`.
    func testWhatIsRacedDoesNotDependOnTheLoopTheRoundRobinHandsOut() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: TestPKI.shared.serverSecurity,
                                               framer: LengthPrefixFramer()).listen()
        XCTAssertEqual(listener.stack.name, "tls-tcp")
        // The same port number on UDP answers nothing, as an unrelated UDP socket would: an SCTP
        // attempt there hangs instead of being refused.
        let silentUDP = try await Preconnection(local: .loopback(port: listener.localAddress.port), transport: .unreliableDatagram,
                                                security: .disabled).listen()
        var untrusting = SecurityParameters.clientDefault
        untrusting.trustedRoots = .pem(file: TestPKI.shared.otherCA)
        let client = Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableMessage,
                                   security: untrusting, framer: LengthPrefixFramer())
        let qualifying = client.candidateStacks().filter(\.qualifies).map(\.stack.name)
        XCTAssertEqual(qualifying.first, "tls-tcp")
        XCTAssertTrue(qualifying.contains("tls-sctp"), "tls-sctp qualifies as a fallback: \(qualifying)")
        for _ in 0..<(2 * EventLoopGroup.shared.loops.count + 2) {
            await XCTAssertThrowsTransportError(.certificateRejected) { try await client.initiate(timeout: .seconds(3)) }
        }
        await listener.stop()
        await silentUDP.stop()
    }
}
