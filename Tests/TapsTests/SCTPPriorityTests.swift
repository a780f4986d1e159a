import Synchronization
import XCTest
@testable import Taps

/// connPriority between the streams of one association, and msgPriority among one connection's
/// messages: what is more important goes first when data waits to be sent.
final class SCTPPriorityTests: XCTestCase {
    private func sctpPreconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: .disabled)
        preconnection.registry = StackRegistry(stacks: [.sctp])
        return preconnection
    }

    /// Connects to a new listener, runs `send` with the connection on its loop, and returns the first
    /// byte of each of the `count` messages the server received, in the order usrsctp delivered them
    /// (the receiving loops run on the SCTP loop too).
    private func arrivals(count: Int, send: @escaping @Sendable (Connection) async throws -> Void) async throws -> [Character] {
        let listener = try await sctpPreconnection(local: .loopback()).listen()
        let arrivals = ArrivalLog()
        let server = Task(executorPreference: listener.loop) {
            for await connection in listener.connections {
                Task(executorPreference: listener.loop) {
                    // Until the stream's end (an empty final message) or the connection's.
                    while let message = try? await connection.receive(), let first = message.content.first {
                        arrivals.entries.withLock { $0.append(Character(UnicodeScalar(first))) }
                    }
                }
            }
        }
        let connection = try await sctpPreconnection(remote: .loopback(port: listener.localAddress.port)).initiate(timeout: .seconds(5))
        try await Task(executorPreference: connection.loop) { try await send(connection) }.value
        for _ in 0..<1_000 where arrivals.entries.withLock({ $0.count }) < count { try await Task.sleep(for: .milliseconds(10)) }
        server.cancel()
        await connection.close()
        await listener.stop()
        return arrivals.entries.withLock { $0 }
    }

    private static func flood(_ connection: Connection) async throws {
        for _ in 0..<400 { try await connection.send([UInt8](repeating: UInt8(ascii: "A"), count: 16_384)) }
    }

    /// Stream A floods 400 x 16 KB (more than usrsctp's 4 MB send buffer); stream B (a clone, with
    /// connPriority `bPriority`) sends 20 small messages right after it, or before it.
    private func arrivalOrder(bPriority: Int, bFirst: Bool = false) async throws -> [Character] {
        try await arrivals(count: 420) { a in
            let b = try await a.clone()
            await b.setConnPriority(bPriority)
            if bFirst { for _ in 0..<20 { try await b.send([UInt8](repeating: UInt8(ascii: "B"), count: 100)) } }
            try await Self.flood(a)
            if !bFirst { for _ in 0..<20 { try await b.send([UInt8](repeating: UInt8(ascii: "B"), count: 100)) } }
            await b.close()
        }
    }

    /// B (priority 10) sends after A (the default, 100) queued 6.5 MB: B overtakes what A still has
    /// waiting. With equal priorities B arrives after all of A.
    func testAMoreImportantStreamOvertakesQueuedData() async throws {
        let order = try await arrivalOrder(bPriority: 10)
        XCTAssertEqual(order.count, 420, "A \(order.filter { $0 == "A" }.count) B \(order.filter { $0 == "B" }.count)")
        let lastB = try XCTUnwrap(order.lastIndex(of: "B"))
        XCTAssertLessThan(lastB, 380, "B (priority 10) finished at \(lastB) of 420")
    }

    /// B (priority 200) sends before A floods: A goes first, though B was queued earlier. With equal
    /// priorities B arrives first.
    func testALessImportantStreamYieldsToLaterData() async throws {
        let order = try await arrivalOrder(bPriority: 200, bFirst: true)
        XCTAssertEqual(order.count, 420)
        let firstB = try XCTUnwrap(order.firstIndex(of: "B"))
        XCTAssertGreaterThan(firstB, 100, "B (priority 200) began at \(firstB) of 420")
    }

    /// One connection queues 400 x 16 KB, then 20 small messages with msgPriority `priority`.
    private func messageOrder(priority: Int) async throws -> [Character] {
        try await arrivals(count: 420) { connection in
            try await Self.flood(connection)
            var properties = MessageProperties()
            properties.priority = priority
            for _ in 0..<20 {
                try await connection.send([UInt8](repeating: UInt8(ascii: "U"), count: 100), context: MessageContext(properties: properties))
            }
        }
    }

    /// Messages with msgPriority 0 overtake the default-priority messages their connection still has
    /// waiting in the send queue (RFC 9622 section 9.1.3.2). With equal priorities they arrive last.
    func testAMoreImportantMessageOvertakesItsConnectionsQueue() async throws {
        let order = try await messageOrder(priority: 0)
        XCTAssertEqual(order.count, 420)
        let lastUrgent = try XCTUnwrap(order.lastIndex(of: "U"))
        XCTAssertLessThan(lastUrgent, 380, "the msgPriority 0 messages finished at \(lastUrgent) of 420")
    }
}

private final class ArrivalLog: Sendable {
    let entries = Mutex<[Character]>([])
}
