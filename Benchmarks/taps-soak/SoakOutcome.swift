import Foundation
import Taps

/// What one soak run moved, what the path did to it, and whether every check held.
struct SoakOutcome {
    let stack: String
    let sent: Int
    let delivered: Int
    let elapsed: Duration
    /// The in-process lossy path's counts (nil when the faults came from outside, e.g. a TUN device).
    let faults: LossyPath.Counters?
    let checks: String
    let failures: [String]

    var passed: Bool { failures.isEmpty }

    var seconds: Double { Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18 }

    var megabytesPerSecond: Double { Double(delivered) / 1e6 / max(seconds, 1e-9) }

    func line(loss: Double) -> String {
        var text = "\(stack.padding(toLength: 16, withPad: " ", startingAt: 0)) loss \(String(format: "%4.1f", loss * 100)) %  "
            + "\(sent >> 20) MiB in \(String(format: "%.1f", seconds)) s (\(String(format: "%.1f", megabytesPerSecond)) MB/s)  \(checks)"
        if let faults {
            text += "  path: \(faults.written) datagrams, \(faults.dropped) dropped, \(faults.duplicated) duplicated, "
                + "\(faults.reordered) reordered, \(faults.corrupted) corrupted"
        }
        return text + (passed ? "  PASS" : "  FAIL: " + failures.joined(separator: "; "))
    }

    func json(loss: Double) -> String {
        var fields = [
            "\"stack\": \"\(stack)\"", "\"loss\": \(loss)", "\"sent_bytes\": \(sent)", "\"delivered_bytes\": \(delivered)",
            "\"megabytes_per_second\": \(String(format: "%.2f", megabytesPerSecond))", "\"passed\": \(passed)",
        ]
        if let faults {
            fields += ["\"datagrams\": \(faults.written)", "\"dropped\": \(faults.dropped)", "\"duplicated\": \(faults.duplicated)",
                       "\"reordered\": \(faults.reordered)", "\"corrupted\": \(faults.corrupted)"]
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}
