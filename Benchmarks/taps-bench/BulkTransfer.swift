import Taps

/// The two sides of a bulk measurement, shared by every stack.
enum BulkTransfer {
    /// Connects and sends `messageSize`-byte messages for `seconds` from a task on the connection's
    /// loop (so no thread hop per message), then closes gracefully.
    static func send(_ client: Preconnection, seconds: Double, messageSize: Int) async throws {
        let connection = try await client.initiate()
        try await Task(executorPreference: connection.loop) {
            let message = [UInt8](repeating: 0x78, count: messageSize)
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                try await connection.send(message)
            }
            await connection.close()
        }.value
    }

    /// MB/s (10^6 bytes) over `elapsed`.
    static func megabytesPerSecond(_ bytes: Int, _ elapsed: Duration) -> Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds > 0 ? Double(bytes) / seconds / 1e6 : 0
    }
}

extension BulkTransfer {
    /// The receiving side: takes the listener's first connection and counts what arrives until the
    /// peer's final message, on the listener's loop (where the connection lives). Returns the bytes and
    /// the time between the first and the last message that carried any.
    static func receive(on listener: Listener) async -> (bytes: Int, elapsed: Duration) {
        await Task(executorPreference: listener.loop) { () -> (Int, Duration) in
            var iterator = listener.connections.makeAsyncIterator()
            guard let connection = await iterator.next() else { return (0, .zero) }
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
        }.value
    }
}
