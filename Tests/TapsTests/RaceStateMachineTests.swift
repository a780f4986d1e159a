import XCTest
@testable import Taps

/// Racing on a virtual clock with a scripted resolver and scripted layers: no sockets, no waiting.
final class RaceStateMachineTests: XCTestCase {
    private let refused = TransportError(.connectionRefused, "refused")

    func testHappyEyeballsOrderPutsIPv6First() {
        let v4a = SocketAddress(ip: "127.0.0.1", port: 1)!, v4b = SocketAddress(ip: "127.0.0.2", port: 1)!
        let v6a = SocketAddress(ip: "::1", port: 1)!
        XCTAssertEqual(RaceStateMachine.interleaveFamilies(ipv6: [v6a], ipv4: [v4a, v4b]), [v6a, v4a, v4b])
    }

    func testEachEndpointIsAskedForBothFamiliesAtOnce() {
        let race = RaceHarness()
        race.race(["a.example", "b.example"])
        XCTAssertEqual(race.resolver.queries.map { "\($0.host)/\($0.family)" },
                       ["a.example/ipv6", "a.example/ipv4", "b.example/ipv6", "b.example/ipv4"])
    }

    func testAnIPv6AnswerStartsAtOnceWithoutWaitingForIPv4() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .milliseconds(10), with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .seconds(5), with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .milliseconds(10))
        XCTAssertEqual(race.starts, ["2001:db8::1@10"])
        try race.layer(0).becomeReady()
        XCTAssertEqual(race.finishedAt, .milliseconds(10), "won before the IPv4 answer")
        XCTAssertEqual(race.resolver.cancelled.map(\.family), [.ipv4], "the lookup nobody waits for is withdrawn")
        let winner = try XCTUnwrap(race.result).get()
        XCTAssertEqual(winner.candidate.address.ipAddress, "2001:db8::1")
    }

    func testAnIPv4AnswerWaitsTheResolutionDelayForIPv6() {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.resolver.answer("example", .ipv6, after: .milliseconds(500), with: ["2001:db8::1"])
        race.race(["example"])
        race.clock.advance(to: .milliseconds(49))
        XCTAssertEqual(race.starts, [])
        race.clock.advance(to: .milliseconds(50))
        XCTAssertEqual(race.starts, ["192.0.2.1@50"])
        // The stagger passes at 300 ms with nothing to try; the IPv6 answer starts at once.
        race.clock.advance(to: .milliseconds(500))
        XCTAssertEqual(race.starts, ["192.0.2.1@50", "2001:db8::1@500"])
    }

    func testAnIPv6AnswerWithinTheResolutionDelayGoesFirst() {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1", "192.0.2.2"])
        race.resolver.answer("example", .ipv6, after: .milliseconds(30), with: ["2001:db8::1"])
        race.race(["example"])
        race.clock.advance(to: .seconds(1))
        XCTAssertEqual(race.starts, ["2001:db8::1@30", "192.0.2.1@280", "192.0.2.2@530"])
    }

    func testAFailedIPv6QueryLetsIPv4StartWithoutDelay() {
        let race = RaceHarness()
        race.resolver.fail("example", .ipv6, after: .milliseconds(5), .resolutionFailed("no AAAA"))
        race.resolver.answer("example", .ipv4, after: .milliseconds(8), with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .milliseconds(8))
        XCTAssertEqual(race.starts, ["192.0.2.1@8"])
    }

    func testAFailedAttemptStartsTheNextAtOnce() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .milliseconds(30))
        try race.layer(0).fail(refused)
        XCTAssertEqual(race.starts, ["2001:db8::1@0", "192.0.2.1@30"])
        XCTAssertTrue(try race.layer(0).aborted, "the failed attempt's layer is released")
    }

    func testALayerThatCannotBeMadeCountsAsAFailedAttempt() {
        let race = RaceHarness()
        race.unbuildable = ["2001:db8::1"]
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .zero)
        XCTAssertEqual(race.starts, ["192.0.2.1@0"])
    }

    func testTheFirstReadyWinsAndTheOthersAreAbortedWithNoTimerLeft() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1", "2001:db8::2"])
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.race(["example"], timeout: .seconds(10))
        race.clock.advance(to: .milliseconds(600))
        XCTAssertEqual(race.starts, ["2001:db8::1@0", "192.0.2.1@250", "2001:db8::2@500"])
        try race.layer(1).becomeReady()
        let winner = try XCTUnwrap(race.result).get()
        XCTAssertTrue(winner.layer === (try race.layer(1)))
        XCTAssertEqual(race.layers.map(\.aborted), [true, false, true])
        XCTAssertEqual(race.clock.armedTimers, 0, "stagger and deadline are cancelled")
        try race.layer(0).fail(refused)  // a late callback from a loser changes nothing
        XCTAssertNoThrow(try XCTUnwrap(race.result).get())
    }

    func testStacksRankBeforeAddresses() {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.race(["example"], stacks: [.tlsTCP, .tcp], stagger: .milliseconds(100))
        race.clock.advance(to: .milliseconds(300))
        XCTAssertEqual(race.layers.map { "\($0.candidate.stack)/\($0.candidate.address.ipAddress)" },
                       ["tls-tcp/2001:db8::1", "tls-tcp/192.0.2.1", "tcp/2001:db8::1", "tcp/192.0.2.1"])
    }

    func testAnAddressArrivingAfterEveryAttemptFailedStartsAtOnce() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .milliseconds(120), with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .milliseconds(10))
        try race.layer(0).fail(refused)
        XCTAssertNil(race.result, "an answer is still to come")
        race.clock.advance(to: .milliseconds(120))
        XCTAssertEqual(race.starts, ["2001:db8::1@0", "192.0.2.1@120"])
    }

    func testWhenEveryAttemptFailsTheMostTellingFailureIsReported() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.answer("example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.race(["example"])
        race.clock.advance(to: .zero)
        try race.layer(0).fail(.handshakeFailed("bad certificate"))
        try race.layer(1).fail(refused)
        let result = try XCTUnwrap(race.result)
        XCTAssertThrowsError(try result.get()) { XCTAssertEqual(($0 as? TransportError)?.code, .handshakeFailed) }
    }

    func testTheDeadlineCoversNameResolution() throws {
        let race = RaceHarness()
        race.race(["silent.example"], timeout: .seconds(2))
        race.clock.advance(to: .milliseconds(1999))
        XCTAssertNil(race.result)
        race.clock.advance(to: .seconds(3))
        XCTAssertEqual(race.finishedAt, .seconds(2))
        XCTAssertThrowsError(try XCTUnwrap(race.result).get()) {
            XCTAssertEqual(($0 as? TransportError)?.code, .timedOut)
            XCTAssertTrue(($0 as? TransportError)?.message.contains("name lookups unanswered: endpoint 0 IPv6, endpoint 0 IPv4") ?? false,
                          "the timeout says what it waited for: \($0)")
        }
    }

    func testTheDeadlineAbortsRunningAttempts() throws {
        let race = RaceHarness()
        race.resolver.answer("example", .ipv6, after: .zero, with: ["2001:db8::1"])
        race.resolver.fail("example", .ipv4, after: .zero, .resolutionFailed("no A"))
        race.race(["example"], timeout: .seconds(1))
        race.clock.advance(to: .seconds(1))
        XCTAssertTrue(try race.layer(0).aborted)
        XCTAssertThrowsError(try XCTUnwrap(race.result).get()) {
            XCTAssertEqual(($0 as? TransportError)?.code, .timedOut)
            XCTAssertTrue(($0 as? TransportError)?.message.contains("attempts still running: tcp to [2001:db8::1]:443") ?? false, "\($0)")
        }
    }

    func testAFailedResolutionReportsTheFirstEndpointsError() throws {
        let race = RaceHarness()
        race.resolver.fail("a.example", .ipv6, after: .milliseconds(3), .resolutionFailed("a.example: unknown"))
        race.resolver.fail("a.example", .ipv4, after: .milliseconds(1), .resolutionFailed("a.example: unknown"))
        race.resolver.fail("b.example", .ipv6, after: .milliseconds(2), .resolutionFailed("b.example: unknown"))
        race.resolver.answer("b.example", .ipv4, after: .milliseconds(1), with: [])
        race.race(["a.example", "b.example"])
        race.clock.advance(to: .milliseconds(2))
        XCTAssertNil(race.result, "a query is still out")
        race.clock.advance(to: .milliseconds(3))
        XCTAssertEqual(race.layers.count, 0)
        XCTAssertThrowsError(try XCTUnwrap(race.result).get()) {
            XCTAssertEqual(($0 as? TransportError)?.code, .resolutionFailed)
            XCTAssertEqual(($0 as? TransportError)?.message, "a.example: unknown")
        }
    }

    func testAddressesOfSeveralEndpointsRaceInOneOrder() {
        let race = RaceHarness()
        race.resolver.answer("a.example", .ipv4, after: .zero, with: ["192.0.2.1"])
        race.resolver.answer("a.example", .ipv6, after: .zero, with: [])
        race.resolver.answer("b.example", .ipv6, after: .milliseconds(20), with: ["2001:db8::2"])
        race.resolver.answer("b.example", .ipv4, after: .milliseconds(20), with: ["192.0.2.1"])
        race.race(["a.example", "b.example"])
        race.clock.advance(to: .seconds(1))
        XCTAssertEqual(race.starts, ["2001:db8::2@20", "192.0.2.1@270"], "the shared address is tried once")
    }
}
