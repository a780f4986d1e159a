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

    /// Stream A floods 400 x 16 KB (more than usrsctp's 4 MB send buffer); stream B (a clone, with
    /// connPriority `bPriority`) sends 20 small messages right after it, or before it. Returns the
    /// order in which the server received them ("A" or "B").
    private func arrivalOrder(bPriority: Int, bFirst: Bool = false) async throws -> [Character] {
        let listener = try await sctpPreconnection(local: .loopback()).listen()
        let arrivals = ArrivalLog()
        let expected = 420
        // Both receiving loops run on the SCTP loop, so the log keeps the order usrsctp delivered in.
        let server = Task(executorPreference: listener.loop) {
            for await connection in listener.connections {
                Task(executorPreference: listener.loop) {
                    while let message = try? await connection.receive() {
                        arrivals.entries.withLock { $0.append(Character(UnicodeScalar(message.content[0]))) }
                    }
                }
            }
        }
        let a = try await sctpPreconnection(remote: .loopback(port: listener.localAddress.port)).initiate(timeout: .seconds(5))
        let b = try await a.clone()
        await b.setConnPriority(bPriority)
        try await Task(executorPreference: a.loop) {
            if bFirst { for _ in 0..<20 { try await b.send([UInt8](repeating: UInt8(ascii: "B"), count: 100)) } }
            for _ in 0..<400 { try await a.send([UInt8](repeating: UInt8(ascii: "A"), count: 16_384)) }
            if !bFirst { for _ in 0..<20 { try await b.send([UInt8](repeating: UInt8(ascii: "B"), count: 100)) } }
        }.value
        for _ in 0..<1_000 where arrivals.entries.withLock({ $0.count }) < expected { try await Task.sleep(for: .milliseconds(10)) }
        server.cancel()
        await b.close()
        await a.close()
        await listener.stop()
        return arrivals.entries.withLock { $0 }
    }

    /// B (priority 10) sends after A (the default, 100) queued 6.5 MB: B overtakes what A still has
    /// waiting. With equal priorities B arrives after all of A.
    func testAMoreImportantStreamOvertakesQueuedData() async throws {
        let order = try await arrivalOrder(bPriority: 10)
        XCTAssertEqual(order.count, 420)
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
        let listener = try await sctpPreconnection(local: .loopback()).listen()
        let arrivals = ArrivalLog()
        let server = Task(executorPreference: listener.loop) {
            for await connection in listener.connections {
                while let message = try? await connection.receive() {
                    arrivals.entries.withLock { $0.append(Character(UnicodeScalar(message.content[0]))) }
                }
            }
        }
        let connection = try await sctpPreconnection(remote: .loopback(port: listener.localAddress.port)).initiate(timeout: .seconds(5))
        try await Task(executorPreference: connection.loop) {
            for _ in 0..<400 { try await connection.send([UInt8](repeating: UInt8(ascii: "A"), count: 16_384)) }
            var properties = MessageProperties()
            properties.priority = priority
            for _ in 0..<20 {
                try await connection.send([UInt8](repeating: UInt8(ascii: "U"), count: 100), context: MessageContext(properties: properties))
            }
        }.value
        for _ in 0..<1_000 where arrivals.entries.withLock({ $0.count }) < 420 { try await Task.sleep(for: .milliseconds(10)) }
        server.cancel()
        await connection.close()
        await listener.stop()
        return arrivals.entries.withLock { $0 }
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
