import Taps

/// The two sides of a bulk measurement, shared by every stack. Each side runs as a task that
/// prefers the connection's loop, in a function isolated to the connection (`isolated
/// Connection`): every `send` / `receive` is then a plain call on the loop. A closure that is not
/// isolated to the connection hops to the connection's executor and back for each call, and a task
/// without the loop as its preferred executor is moved again each time a suspended `receive()`
/// resumes (Docs/Benchmarks.md has the figures; Docs/GettingStarted.md the pattern).
enum BulkTransfer {
    /// Connects and sends `messageSize`-byte messages for `seconds`, then closes gracefully.
    static func send(_ client: Preconnection, seconds: Double, messageSize: Int) async throws {
        let connection = try await client.initiate()
        try await Task(executorPreference: connection.loop) {
            try await send(on: connection, seconds: seconds, messageSize: messageSize)
        }.value
    }

    private static func send(on connection: isolated Connection, seconds: Double, messageSize: Int) async throws {
        let message = [UInt8](repeating: 0x78, count: messageSize)
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            try await connection.send(message)
        }
        await connection.close()
    }

    /// MB/s (10^6 bytes) over `elapsed`.
    static func megabytesPerSecond(_ bytes: Int, _ elapsed: Duration) -> Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds > 0 ? Double(bytes) / seconds / 1e6 : 0
    }
}

extension BulkTransfer {
    /// The receiving side: takes the listener's first connection and counts what arrives until the
    /// peer's final message. Returns the bytes and the time between the first and the last message
    /// that carried any.
    static func receive(on listener: Listener) async -> (bytes: Int, elapsed: Duration) {
        await Task(executorPreference: listener.loop) { () -> (bytes: Int, elapsed: Duration) in
            var iterator = listener.connections.makeAsyncIterator()
            guard let connection = await iterator.next() else { return (0, .zero) }
            return await receive(on: connection)
        }.value
    }

    private static func receive(on connection: isolated Connection) async -> (bytes: Int, elapsed: Duration) {
        var bytes = 0
        var first: ContinuousClock.Instant?
        var last = ContinuousClock.now
        while let message = try? await connection.receive() {
            if !message.content.isEmpty {
                if first == nil { first = .now }
                bytes += message.content.count
                last = .now
            }
            if message.isFinal { break }
        }
        await connection.close()
        return (bytes, first.map { last - $0 } ?? .zero)
    }
}
