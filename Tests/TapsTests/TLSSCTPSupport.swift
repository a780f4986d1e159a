import Foundation
import XCTest
@testable import Taps

/// Preconnections and helpers for the tls-sctp tests: TLS over SCTP streams (RFC 3436) on usrsctp over
/// loopback UDP, with the test PKI.
enum TLSSCTP {
    static let pki = TestPKI.shared

    static func transport(_ configure: (inout TransportProperties) -> Void = { _ in }) -> TransportProperties {
        var transport = TransportProperties.reliableInOrderStream
        transport.multistreaming = .require
        configure(&transport)
        return transport
    }

    static func listener(security: SecurityParameters = pki.serverSecurity,
                         configure: (inout TransportProperties) -> Void = { _ in }) async throws -> Listener {
        var server = Preconnection(local: .loopback(), transport: transport(configure), security: security)
        server.registry = StackRegistry(stacks: [.tlsSCTP])
        return try await server.listen()
    }

    static func client(_ port: UInt16, security: SecurityParameters = pki.clientSecurity,
                       configure: (inout TransportProperties) -> Void = { _ in }) -> Preconnection {
        var client = Preconnection(remote: .host("localhost", port: port), transport: transport(configure), security: security)
        client.registry = StackRegistry(stacks: [.tlsSCTP])
        return client
    }

    /// A first connection and `count - 1` clones of it, each sending its greeting (`greeting(N)`)
    /// once established, and the server's side of each stream, matched by the greeting it got.
    static func openStreams(_ count: Int, from client: Preconnection,
                            to listener: Listener) async throws -> (clients: [Connection], servers: [Int: Connection]) {
        let first = try await client.initiate(timeout: .seconds(10))
        var clients = [first]
        for _ in 1..<count { clients.append(try await first.clone()) }
        for (index, connection) in clients.enumerated() { try await connection.send(greeting(index)) }
        return (clients, try await acceptStreams(count, on: listener))
    }

    static func greeting(_ index: Int) -> String { "hello " + String(index + 100).dropFirst() }

    /// The next `count` connections `listener` accepts, by the greeting each got first.
    static func acceptStreams(_ count: Int, on listener: Listener) async throws -> [Int: Connection] {
        var servers: [Int: Connection] = [:]
        var incoming = listener.connections.makeAsyncIterator()
        while servers.count < count {
            let next = await incoming.next()
            let server = try XCTUnwrap(next, "the listener ended with \(servers.count) of \(count) streams")
            let text = String(decoding: try await receiveExactly(server, count: 8), as: UTF8.self)
            let index = try XCTUnwrap(Int(text.dropFirst("hello ".count)), "unexpected greeting \(text)")
            servers[index] = server
        }
        return servers
    }
}

/// Reads exactly `count` bytes of a byte stream, leaving what follows for the next read.
func receiveExactly(_ connection: Connection, count: Int) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    while bytes.count < count {
        let message = try await connection.receive(maxLength: count - bytes.count)
        if message.content.isEmpty && message.isComplete { break }
        bytes += message.content
    }
    return bytes
}

extension TLSSCTP {
    /// Byte `offset` of stream `stream`'s test data.
    static func patternByte(stream: Int, offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: (offset &* 31 &+ stream) % 251) }

    /// Sends `total` bytes of stream `stream`'s pattern in `chunk`-byte messages.
    static func sendPattern(_ connection: Connection, stream: Int, total: Int, chunk: Int = 16_384) async throws {
        for start in stride(from: 0, to: total, by: chunk) {
            try await connection.send((start..<min(total, start + chunk)).map { patternByte(stream: stream, offset: $0) })
        }
    }

    /// Receives `total` bytes and checks them against stream `stream`'s pattern; returns how many
    /// matched before the first difference (total when all did).
    static func receivePattern(_ connection: Connection, stream: Int, total: Int) async throws -> Int {
        var received = 0
        while received < total {
            let message = try await connection.receive(maxLength: total - received)
            if message.content.isEmpty && message.isComplete { break }
            for byte in message.content {
                guard byte == patternByte(stream: stream, offset: received) else { return received }
                received += 1
            }
        }
        return received
    }

    /// Every client stream sends `total` bytes of its pattern, side by side.
    static func sendPatterns(on clients: [Connection], total: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (stream, connection) in clients.enumerated() {
                group.addTask { try await sendPattern(connection, stream: stream, total: total) }
            }
            try await group.waitForAll()
        }
    }

    /// Retransmission timeouts for loopback under loss: recovery in tens of milliseconds.
    static func fastRecovery(_ transport: inout TransportProperties) {
        transport.sctp.retransmissionTimeoutMinimum = .milliseconds(20)
        transport.sctp.retransmissionTimeoutInitial = .milliseconds(100)
        transport.sctp.retransmissionTimeoutMaximum = .milliseconds(400)
    }

    /// The faults of the transfer tests: 5 % loss and reordering, 1 % duplication and corruption.
    static let faultyPath = LossyPath(lossRate: 0.05, reorderRate: 0.05, duplicateRate: 0.01, corruptionRate: 0.01, seed: 7)

    /// 5 MB on each of 4 streams from `client` (with a faulty path) to `listener`; asserts every byte
    /// arrived in order and that the path did drop and corrupt, and returns both ends' connections.
    static func transferThroughFaultyPath(from client: Preconnection, to listener: Listener,
                                          file: StaticString = #filePath, line: UInt = #line) async throws -> (clients: [Connection], servers: [Int: Connection]) {
        let (clients, servers) = try await openStreams(4, from: client, to: listener)
        let total = 5 * 1024 * 1024
        async let sending: Void = sendPatterns(on: clients, total: total)
        let received = try await receivePatterns(on: servers, streams: 0..<4, total: total)
        try await sending
        XCTAssertEqual(received, Array(repeating: total, count: 4), file: file, line: line)
        let faults = try await lossyCounters(of: clients[0])
        XCTAssertGreaterThan(faults.dropped, 0, file: file, line: line)
        XCTAssertGreaterThan(faults.corrupted, 0, file: file, line: line)
        return (clients, servers)
    }

    /// The server side of `streams` receives side by side; how many bytes matched on each.
    static func receivePatterns(on servers: [Int: Connection], streams: Range<Int>, total: Int) async throws -> [Int] {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for stream in streams {
                let server = try XCTUnwrap(servers[stream])
                group.addTask { try await receivePattern(server, stream: stream, total: total) }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
    }
}
