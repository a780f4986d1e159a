import Foundation
import Synchronization
import Taps
import TapsBaseline

/// udp and dtls-udp throughput: datagrams of the largest size the connection allows
/// (`sendMsgMaxLen`), sent as fast as `send()` returns for the given time, counted by the listener's
/// connection. What the receiver's socket buffer could not hold the kernel drops: the loss is
/// reported beside the figure. udp's baseline is the same on libuv in C; dtls-udp's is Taps' udp
/// with datagrams of dtls-udp's size (what DTLS costs).
enum DatagramBench {
    struct Outcome {
        var megabytesPerSecond = 0.0
        var sent = 0
        var received = 0
        var size = 0
        var loss: Double { sent > 0 ? max(0, 1 - Double(received) / Double(sent)) : 0 }
    }

    /// What the receiving side saw, read after the sender stopped.
    private struct Received {
        var bytes = 0
        var datagrams = 0
        var first: UInt64?
        var last: UInt64 = 0
    }

    static func taps(_ bench: Bench, seconds: Double, size: Int? = nil) async throws -> Outcome {
        let listener = try await bench.serverPreconnection().listen()
        let counts = Arc()
        let receiver = Task(executorPreference: bench.serverLoop) {
            var incoming = listener.connections.makeAsyncIterator()
            guard let connection = await incoming.next() else { return }
            counts.connection.withLock { $0 = connection }
            await count(on: connection, into: counts)
        }
        let connection = try await bench.clientPreconnection(port: listener.localAddress.port).initiate()
        let allowed = await connection.sendMsgMaxLen
        let datagramSize = size ?? allowed ?? 1_200
        let sent = try await Task(executorPreference: connection.loop) {
            try await send(on: connection, size: datagramSize, seconds: seconds)
        }.value
        try await Task.sleep(for: .milliseconds(200))  // what is in flight arrives
        let received = counts.value.withLock { $0 }
        await connection.abort()
        await listener.stop()
        if let server = counts.connection.withLock({ $0 }) { await server.abort() }  // ends its receive
        await receiver.value
        var outcome = Outcome(sent: sent, received: received.datagrams, size: datagramSize)
        if let first = received.first, received.last > first {
            outcome.megabytesPerSecond = Double(received.bytes) / (Double(received.last - first) / 1e9) / 1e6
        }
        return outcome
    }

    static func baseline(seconds: Double, size: Int) -> Outcome {
        let result = taps_baseline_udp(seconds, size)
        return Outcome(megabytesPerSecond: result.megabytes_per_second, sent: Int(result.sent), received: Int(result.received), size: size)
    }

    private static func send(on connection: isolated Connection, size: Int, seconds: Double) async throws -> Int {
        let message = [UInt8](repeating: 0x64, count: size)
        let deadline = LatencyBench.monotonicNanoseconds() + UInt64(seconds * 1e9)
        var sent = 0
        while LatencyBench.monotonicNanoseconds() < deadline {
            try await connection.send(message)
            sent += 1
        }
        return sent
    }

    /// Counts datagrams until the connection is aborted.
    private static func count(on connection: isolated Connection, into counts: Arc) async {
        while let message = try? await connection.receive() {
            let now = LatencyBench.monotonicNanoseconds()
            counts.value.withLock { received in
                if received.first == nil { received.first = now }
                received.last = now
                received.bytes += message.content.count
                received.datagrams += 1
            }
        }
    }

    private final class Arc: Sendable {
        let value = Mutex(Received())
        let connection = Mutex<Connection?>(nil)
    }
}
