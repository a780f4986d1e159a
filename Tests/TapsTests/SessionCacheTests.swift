import Foundation
import XCTest
@testable import Taps

/// CM: the session cache's limits, sessions exported and imported as bytes, TLS 1.3 tickets and
/// TLS 1.2 session ids, against Taps listeners and openssl s_server.
final class SessionCacheTests: XCTestCase {
    let pki = TestPKI.shared

    private func listen() async throws -> (Listener, Task<Void, Never>) {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity,
                                               framer: LengthPrefixFramer()).listen()
        return (listener, startEcho(listener))
    }

    /// Connects, exchanges one message (a TLS 1.3 ticket arrives after the handshake) and reports
    /// whether the session was resumed; returns the open connection.
    private func exchange(_ port: UInt16, _ security: SecurityParameters) async throws -> (resumed: Bool, Connection) {
        let connection = try await Preconnection(remote: .host("localhost", port: port), transport: .reliableMessage, security: security,
                                                 framer: LengthPrefixFramer()).initiate(timeout: .seconds(5))
        try await connection.send("ticket please")
        _ = try await connection.receive()
        let resumed = await connection.securityDetails?.resumed ?? false
        return (resumed, connection)
    }

    func testExportedSessionResumesInAFreshPreconnection() async throws {
        let (listener, echo) = try await listen()
        let port = listener.localAddress.port
        let (firstResumed, first) = try await exchange(port, pki.clientSecurity)
        XCTAssertFalse(firstResumed)
        let exported = try await first.exportSession()
        let bytes = try XCTUnwrap(exported)
        await first.abort()

        // A new Preconnection has an empty cache: without the bytes, no resumption.
        let (coldResumed, cold) = try await exchange(port, pki.clientSecurity)
        XCTAssertFalse(coldResumed)
        await cold.abort()
        var restored = pki.clientSecurity
        restored.resumptionSession = bytes
        let (warmResumed, warm) = try await exchange(port, restored)
        XCTAssertTrue(warmResumed)
        await warm.abort()

        var corrupt = pki.clientSecurity
        corrupt.resumptionSession = Array(bytes.prefix(10))
        await XCTAssertThrowsTransportError(.invalidArgument) { try await self.exchange(port, corrupt) }
        await listener.stop()
        echo.cancel()
    }

    func testSessionLifetime() async throws {
        let (listener, echo) = try await listen()
        var security = pki.clientSecurity
        security.cachedSessionLifetimeSeconds = 1
        security.sessionCache = TLSSessionCache(maxSessions: 10, lifetimeSeconds: 1)
        let (_, first) = try await exchange(listener.localAddress.port, security)
        let (soon, second) = try await exchange(listener.localAddress.port, security)
        XCTAssertTrue(soon, "resumed within the lifetime")
        try await Task.sleep(for: .milliseconds(2100))
        let (late, third) = try await exchange(listener.localAddress.port, security)
        XCTAssertFalse(late, "a session older than its lifetime is not offered")
        for connection in [first, second, third] { await connection.abort() }
        await listener.stop()
        echo.cancel()
    }

    func testSharedCacheKeepsAtMostMaxSessions() async throws {
        let (a, echoA) = try await listen()
        let (b, echoB) = try await listen()
        let cache = TLSSessionCache(maxSessions: 1)
        var security = pki.clientSecurity
        security.sessionCache = cache
        var open: [Connection] = []
        // Two Preconnections share the cache; each server's session replaces the other's.
        for (port, expectResumed) in [(a.localAddress.port, false), (b.localAddress.port, false), (b.localAddress.port, true),
                                      (a.localAddress.port, false)] {
            let (resumed, connection) = try await exchange(port, security)
            XCTAssertEqual(resumed, expectResumed, "port \(port)")
            XCTAssertEqual(cache.count, 1)
            open.append(connection)
        }
        for connection in open { await connection.abort() }
        await a.stop()
        await b.stop()
        echoA.cancel()
        echoB.cancel()
    }

    func testResumptionAgainstOpenSSLServerWithTicketsAndSessionIDs() async throws {
        for options in [["-tls1_3"], ["-tls1_2", "-no_ticket"]] {
            let port = try await freePort()
            let server = try await ChildProcess.openSSLServer(port: port, options + ["-rev"], connections: 2)
            defer { server.terminate() }
            // s_server serves one connection at a time: the first ends before the second starts.
            var security = pki.clientSecurity
            security.sessionCache = TLSSessionCache()
            let first = try await Preconnection(remote: .host("localhost", port: port), security: security).initiate()
            try await first.send("olleh\n")
            let reply = try await receiveBytes(first, count: 6)
            XCTAssertEqual(String(decoding: reply, as: UTF8.self), "hello\n", "s_server -rev reverses the line")
            await first.close()
            let second = try await Preconnection(remote: .host("localhost", port: port), security: security).initiate()
            let resumed = await second.securityDetails?.resumed
            XCTAssertEqual(resumed, true, "\(options)")
            await second.abort()
        }
    }
}
