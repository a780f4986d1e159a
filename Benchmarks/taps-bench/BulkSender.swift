import Taps

/// The sending side of a bulk measurement, shared by every stack.
enum BulkSender {
    /// Connects and sends `messageSize`-byte messages for `seconds` from a task on the connection's
    /// loop (so no thread hop per message), then closes gracefully.
    static func run(_ client: Preconnection, seconds: Double, messageSize: Int) async throws {
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
