import Foundation
import Taps

extension TapsBench {
    /// Every stack taps-bench measures.
    static let stacks = ["tcp", "tls-tcp", "udp", "dtls-udp", "sctp", "tls-sctp", "dtls-chunk-sctp"]

    /// --latency: `rounds` ping-pong runs of Taps and the baseline in turn; the medians of each
    /// run's percentiles.
    func measureLatency(_ bench: Bench) async throws {
        var latency = LatencyBench(bench: bench, messageSize: messageBytes)
        latency.sctp = SCTPBench(mtu: mtu, tls: bench.stack == "tls-sctp" ? (bench.cert, bench.key) : nil, streams: 1,
                                 chunk: bench.stack == "dtls-chunk-sctp"
                                    ? DTLSChunkSetup(keyManagement: km, keyFile: bench.chunkKeys ?? "", cert: bench.cert, key: bench.key, rekeyBytes: nil)
                                    : nil)
        var ours: [LatencyBench.Percentiles] = [], baseline: [LatencyBench.Percentiles] = []
        for round in 0..<max(1, rounds) {
            for tapsTurn in round % 2 == 0 ? [true, false] : [false, true] {
                if tapsTurn && only != "baseline" { ours.append(try await latency.taps(seconds: seconds)) }
                if !tapsTurn && only != "taps", let figures = try latency.baseline(seconds: seconds) { baseline.append(figures) }
            }
        }
        reportLatency(bench.stack, ours: ours, baseline: baseline)
    }

    private func reportLatency(_ stack: String, ours: [LatencyBench.Percentiles], baseline: [LatencyBench.Percentiles]) {
        func median(_ values: [LatencyBench.Percentiles], _ field: KeyPath<LatencyBench.Percentiles, Double>) -> Double {
            let sorted = values.map { $0[keyPath: field] }.sorted()
            guard !sorted.isEmpty else { return 0 }
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        func format(_ value: Double) -> String { String(format: "%.1f", value) }
        let p50 = median(ours, \.p50), p99 = median(ours, \.p99), p999 = median(ours, \.p999)
        let samples = ours.map(\.samples).reduce(0, +)
        if json {
            var fields = ["\"stack\": \"\(stack)\"", "\"latency\": true", "\"message_size\": \(messageBytes)", "\"seconds\": \(seconds)",
                          "\"p50_us\": \(format(p50))", "\"p99_us\": \(format(p99))", "\"p999_us\": \(format(p999))", "\"samples\": \(samples)"]
            if stack.hasSuffix("sctp") { fields.append("\"mtu\": \(mtu)") } else { fields.append("\"pinned\": \(pin && ProcessInfo.processInfo.activeProcessorCount >= 2)") }
            if stack == "dtls-chunk-sctp" { fields.append("\"km\": \"\(km.rawValue)\"") }
            if baseline.isEmpty {
                fields.append("\"baseline\": null")
            } else {
                fields += ["\"baseline\": \"c\"", "\"baseline_p50_us\": \(format(median(baseline, \.p50)))",
                           "\"baseline_p99_us\": \(format(median(baseline, \.p99)))", "\"baseline_p999_us\": \(format(median(baseline, \.p999)))",
                           "\"baseline_samples\": \(baseline.map(\.samples).reduce(0, +))"]
            }
            if ours.count > 1 {
                fields.append("\"rounds_p50_us\": [\(ours.map { format($0.p50) }.joined(separator: ", "))]")
            }
            print("{\(fields.joined(separator: ", "))}")
        } else {
            let name = stack.padding(toLength: 16, withPad: " ", startingAt: 0)
            print("\(name) taps       p50 \(format(p50)) us  p99 \(format(p99)) us  p99.9 \(format(p999)) us  (\(samples) round trips)")
            if !baseline.isEmpty {
                print("\("".padding(toLength: 16, withPad: " ", startingAt: 0)) C baseline p50 \(format(median(baseline, \.p50))) us  p99 \(format(median(baseline, \.p99))) us  p99.9 \(format(median(baseline, \.p999))) us")
            }
        }
    }
}
