import Taps

/// The sending side of a bulk measurement, shared by every stack.
enum BulkSender {
    /// Connects and sends `messageSize`-byte messages for `seconds`, on `loop` (where the
    /// connection lives, so no thread hop per message), then closes gracefully.
    static func run(_ client: Preconnection, on loop: EventLoop, seconds: Double, messageSize: Int) async throws {
        try await Task(executorPreference: loop) {
            let connection = try await client.initiate()
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
