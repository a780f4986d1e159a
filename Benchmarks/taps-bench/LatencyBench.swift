import Foundation
import Histogram
import Taps
import TapsBaseline

/// taps-bench --latency: the round-trip time of one small message at a time, echoed by the peer,
/// recorded in an HDR histogram (3 significant digits). tcp, tls-tcp and udp have a C baseline (the
/// same ping-pong on libuv + OpenSSL); dtls-udp and the SCTP stacks are reported without one. The
/// SCTP stacks' echo runs in a second process, as in their bulk measurement.
struct LatencyBench {
    let bench: Bench
    let messageSize: Int
    /// The SCTP stacks' set-up: path MTU, tls-sctp's identity, dtls-chunk-sctp's key management.
    var sctp = SCTPBench(mtu: 1280)

    /// Round trips left out at the start of every run, Taps' and the baseline's alike (the first
    /// ones pay for session tickets, lazy allocations and cold caches).
    static let warmUp = 100

    struct Percentiles {
        var p50 = 0.0, p99 = 0.0, p999 = 0.0
        var samples = 0
    }

    /// The C ping-pong's mode for this stack, or nil where there is no baseline.
    var baselineMode: Int32? {
        switch bench.stack {
        case "tcp": 0
        case "tls-tcp": 1
        case "udp": 2
        default: nil
        }
    }

    func taps(seconds: Double) async throws -> Percentiles {
        let message = [UInt8](repeating: 0x6C, count: messageSize)
        if bench.stack.hasSuffix("sctp") {
            let server = try sctp.startServer(echo: true)
            defer { server.stop() }
            let connection = try await sctp.clientPreconnection(port: server.port).initiate()
            let result = try await Task(executorPreference: connection.loop) {
                try await Self.pingPong(on: connection, message: message, seconds: seconds)
            }.value
            server.process.waitUntilExit()
            return result
        }
        let listener = try await bench.serverPreconnection().listen()
        let serverLoop = bench.serverLoop
        let echo = Task(executorPreference: serverLoop) {
            for await connection in listener.connections {
                Task(executorPreference: serverLoop) { await Self.echo(on: connection) }
            }
        }
        defer { echo.cancel() }
        let connection = try await bench.clientPreconnection(port: listener.localAddress.port).initiate()
        let result = try await Task(executorPreference: connection.loop) {
            try await Self.pingPong(on: connection, message: message, seconds: seconds)
        }.value
        await listener.stop()
        return result
    }

    func baseline(seconds: Double) throws -> Percentiles? {
        guard let mode = baselineMode else { return nil }
        var samples = [UInt64](repeating: 0, count: 4_000_000)
        let count = samples.withUnsafeMutableBufferPointer { buffer in
            taps_baseline_latency(mode, seconds, messageSize, bench.cert, bench.key, buffer.baseAddress, buffer.count)
        }
        guard count > 0 else { throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: "the C ping-pong failed (\(count))"]) }
        var histogram = Self.histogram()
        for sample in samples[min(Self.warmUp, count)..<count] { _ = histogram.record(sample) }
        return Self.percentiles(histogram)
    }

    /// Sends one message, waits for all of its bytes to come back, records the time, again until
    /// `seconds` have passed; then closes.
    private static func pingPong(on connection: isolated Connection, message: [UInt8], seconds: Double) async throws -> Percentiles {
        var histogram = histogram()
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        var rounds = 0
        while true {
            let start = monotonicNanoseconds()
            guard start < deadline else { break }
            try await connection.send(message)
            var received = 0
            while received < message.count {
                let reply = try await connection.receive()
                if reply.content.isEmpty && reply.isFinal { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "the echo ended"]) }
                received += reply.content.count
            }
            rounds += 1
            if rounds > warmUp { _ = histogram.record(monotonicNanoseconds() - start) }
        }
        await connection.close()
        return percentiles(histogram)
    }

    /// Sends back whatever arrives until the peer ends.
    static func echo(on connection: isolated Connection) async {
        while let message = try? await connection.receive() {
            if !message.content.isEmpty { try? await connection.send(message.content) }
            if message.isFinal { break }
        }
        await connection.close()
    }

    /// Nanoseconds from 1 ns to 100 s, 3 significant digits.
    private static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
    }

    private static func percentiles(_ histogram: Histogram<UInt64>) -> Percentiles {
        Percentiles(p50: Double(histogram.valueAtPercentile(50)) / 1e3, p99: Double(histogram.valueAtPercentile(99)) / 1e3,
                    p999: Double(histogram.valueAtPercentile(99.9)) / 1e3, samples: Int(histogram.totalCount))
    }

    /// CLOCK_MONOTONIC, as the C baseline's uv_hrtime.
    static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
