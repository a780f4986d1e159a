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
