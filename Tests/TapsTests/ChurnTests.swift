import Foundation
import XCTest
@testable import Taps

/// 1,000 connections per stack opened, used (one message each way) and closed, one after another:
/// afterwards the process holds no more file descriptors and its loops no more libuv handles than
/// before, so nothing a connection opens outlives it. The growth of the resident set is printed, not asserted (memory is measured
/// by taps-bench --idle-connections). On udp a peer sends no end, so the listener's side of each
/// connection ends by `incomingDatagramIdleTimeout`, short here.
final class ChurnTests: XCTestCase {
    static let pki = TestPKI.shared
    static let count = 1_000

    func testTCPChurnLeavesNothingOpen() async throws {
        try await churn("tcp", server: Preconnection(local: .loopback(), security: .disabled, framer: LengthPrefixFramer())) {
            Preconnection(remote: .loopback(port: $0), security: .disabled, framer: LengthPrefixFramer())
        }
    }

    func testTLSTCPChurnLeavesNothingOpen() async throws {
        try await churn("tls-tcp", server: Preconnection(local: .loopback(), security: Self.pki.serverSecurity, framer: LengthPrefixFramer())) {
            Preconnection(remote: .loopback(port: $0), security: Self.pki.clientSecurity, framer: LengthPrefixFramer())
        }
    }

    func testUDPChurnLeavesNothingOpen() async throws {
        var transport = TransportProperties.unreliableDatagram
        transport.incomingDatagramIdleTimeout = .milliseconds(100)
        try await churn("udp", server: Preconnection(local: .loopback(), transport: transport, security: .disabled)) {
            Preconnection(remote: .loopback(port: $0), transport: .unreliableDatagram, security: .disabled)
        }
    }

    func testDTLSUDPChurnLeavesNothingOpen() async throws {
        var transport = TransportProperties.unreliableDatagram
        transport.incomingDatagramIdleTimeout = .milliseconds(100)
        try await churn("dtls-udp", server: Preconnection(local: .loopback(), transport: transport, security: Self.pki.serverSecurity)) {
            Preconnection(remote: .loopback(port: $0), transport: .unreliableDatagram, security: Self.pki.clientSecurity)
        }
    }

    func testSCTPChurnLeavesNothingOpen() async throws {
        try await churn("sctp", server: SCTPLossTests.preconnection(local: .loopback())) {
            SCTPLossTests.preconnection(remote: .loopback(port: $0))
        }
    }

    func testTLSSCTPChurnLeavesNothingOpen() async throws {
        var server = Preconnection(local: .loopback(), transport: TLSSCTP.transport(), security: Self.pki.serverSecurity,
                                   framer: LengthPrefixFramer())
        server.registry = StackRegistry(stacks: [.tlsSCTP])
        try await churn("tls-sctp", server: server) { port in
            var client = TLSSCTP.client(port)
            client.framer = LengthPrefixFramer()
            return client
        }
    }

    func testDTLSChunkSCTPChurnLeavesNothingOpen() async throws {
        var keys = DTLSChunkPreSharedKeys.random()
        keys.allowsReuseAcrossAssociations = true  // hundreds of associations; the traffic is not secret
        var server = Preconnection(local: .loopback(), transport: DTLSChunkSCTPTests.transport(), security: DTLSChunkSCTPTests.security(keys))
        server.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        try await churn("dtls-chunk-sctp", server: server) { DTLSChunkSCTPTests.client($0, keys: keys, lossy: nil) }
    }

    /// Opens, uses and closes `count` connections from `client` to a listener made from `server`,
    /// then waits for the descriptor count to come back down.
    private func churn(_ stack: String, server: Preconnection, client: (UInt16) -> Preconnection,
                       file: StaticString = #filePath, line: UInt = #line) async throws {
        let listener = try await server.listen()
        XCTAssertEqual(listener.stack.name, stack, file: file, line: line)
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        func use(_ index: Int) async throws {
            let connection = try await client(port).initiate(timeout: .seconds(10))
            try await connection.send("churn \(index)")
            let reply = try await connection.receive()
            XCTAssertEqual(reply.text, "churn \(index)", file: file, line: line)
            await connection.close()
        }
        // A few first, so that what the process opens once (timers of the runtime, the loops' own
        // descriptors) is counted in the starting point, and time for their listener sides to end
        // (on udp by the idle timeout, whose sweep timer then stops too).
        for index in 0..<20 { try await use(index) }
        try await Task.sleep(for: .milliseconds(500))
        let descriptorsBefore = try Self.openDescriptors(), residentBefore = Self.residentBytes()
        let handlesBefore = try await Self.openHandles()
        for index in 0..<Self.count { try await use(index) }
        var descriptorsAfter = try Self.openDescriptors(), handlesAfter = try await Self.openHandles()
        for _ in 0..<500 where descriptorsAfter > descriptorsBefore || handlesAfter > handlesBefore {  // server sides close after their peers
            try await Task.sleep(for: .milliseconds(20))
            descriptorsAfter = try Self.openDescriptors()
            handlesAfter = try await Self.openHandles()
        }
        let growth = (Self.residentBytes() - residentBefore) / 1024
        print("churn \(stack): \(Self.count) connections, descriptors \(descriptorsBefore) -> \(descriptorsAfter), libuv handles \(handlesBefore) -> \(handlesAfter), resident set \(growth >= 0 ? "+" : "")\(growth) KB")
        XCTAssertLessThanOrEqual(descriptorsAfter, descriptorsBefore, "\(stack): descriptors left open", file: file, line: line)
        XCTAssertLessThanOrEqual(handlesAfter, handlesBefore, "\(stack): libuv handles left open", file: file, line: line)
        await listener.stop()
        echo.cancel()
    }

    /// libuv handles open on the shared loops, where these connections run (the SCTP loop among them).
    static func openHandles() async throws -> Int {
        var total = 0
        for loop in EventLoopGroup.shared.loops { total += try await loop.openHandleCount() }
        return total
    }

    static func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }

    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }
}
