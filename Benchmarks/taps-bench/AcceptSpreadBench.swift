import Foundation
import Taps

/// A tcp or tls-tcp listener that keeps everything it accepts on one loop, against one that hands
/// each accepted connection to the next loop of a group with a loop per core
/// (`Preconnection.eventLoopGroup`). Clients run on a group of their own, spread the same way.
struct AcceptSpreadBench {
    let stack: String
    let cert: String
    let key: String
    let serverGroup: EventLoopGroup
    let clientGroup: EventLoopGroup
    /// Clients initiating at once, and connections transferring at once.
    let concurrency: Int

    private var tls: Bool { stack == "tls-tcp" }

    private var registry: StackRegistry { StackRegistry(stacks: StackRegistry.standard.stacks.filter { $0.name == stack }) }

    private func server(spread: Bool) -> Preconnection {
        let security: SecurityParameters = tls ? .server(identity: .pemFiles(certificate: cert, key: key)) : .disabled
        var preconnection = Preconnection(local: .loopback(), security: security)
        preconnection.registry = registry
        if spread { preconnection.eventLoopGroup = serverGroup } else { preconnection.loop = serverGroup.loops[0] }
        return preconnection
    }

    private func client(port: UInt16) -> Preconnection {
        var security = SecurityParameters.disabled
        if tls {
            security = .clientDefault
            security.trustedRoots = .pem(file: cert)
        }
        var properties = TransportProperties.reliableInOrderStream
        properties.isolateSession = true  // full handshakes
        var preconnection = Preconnection(remote: .loopback(port: port), transport: properties, security: security)
        preconnection.registry = registry
        preconnection.eventLoopGroup = clientGroup
        return preconnection
    }

    /// Connections (tcp) or full TLS handshakes (tls-tcp) per second, `concurrency` clients
    /// initiating and aborting in a loop.
    func establishments(spread: Bool, seconds: Double) async throws -> Double {
        let listener = try await server(spread: spread).listen()
        let server = Task {
            for await connection in listener.connections {
                Task(executorPreference: connection.loop) {
                    while let message = try? await connection.receive(), !message.isFinal {}
                    await connection.abort()
                }
            }
        }
        let client = client(port: listener.localAddress.port)
        let rate = try await operationsPerSecond(for: seconds) { deadline in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        var count = 0
                        while ContinuousClock.now < deadline {
                            let connection = try await client.initiate()
                            await connection.abort()
                            count += 1
                        }
                        return count
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        await listener.stop()
        server.cancel()
        return rate
    }

    /// MB/s (10^6 bytes) that `concurrency` connections moved together, as the server received them.
    func throughput(spread: Bool, seconds: Double, messageSize: Int) async throws -> Double {
        let listener = try await server(spread: spread).listen()
        let connections = concurrency
        async let received = BulkTransfer.receive(on: listener, connections: connections)
        let client = client(port: listener.localAddress.port)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<connections {
                group.addTask { try await BulkTransfer.send(client, seconds: seconds, messageSize: messageSize) }
            }
            try await group.waitForAll()
        }
        let (bytes, elapsed) = await received
        await listener.stop()
        return BulkTransfer.megabytesPerSecond(bytes, elapsed)
    }
}
