import ArgumentParser
import Foundation
import Taps

/// A bounded soak: every stack moves a fixed amount through a faulty path (loss, reordering,
/// duplication, corruption) and the receiver checks every byte. Not part of the test suite; see
/// Benchmarks/soak.sh and Docs/Benchmarks.md.
@main
struct TapsSoak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taps-soak",
        abstract: "Move data over every stack through a lossy path and check every byte.",
        discussion: "Build in release mode: swift run -c release taps-soak --stack sctp --loss 0.05")

    @Option(name: .long, help: "Stack to soak (\(SoakStacks.names.joined(separator: ", "))); repeat for several. Default: all.")
    var stack: [String] = []

    @Option(name: .long, help: "Loss rate of the path (0.01 is 1 %); repeat for several. Reordering is as likely, duplication and corruption half as likely.")
    var loss: [Double] = [0.01, 0.05, 0.10]

    @Option(name: .long, help: "MiB each run sends.")
    var megabytes = 50

    @Option(name: .long, help: "Seed of the faults and of the bytes sent.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "udp / dtls-udp: datagrams (1,100 bytes) sent per second.")
    var datagramRate = 20_000

    @Option(name: .long, help: "Address the listener binds.")
    var listenHost = "127.0.0.1"

    @Option(name: .long, help: "Address the client connects to (another address routed to the listener, e.g. through an impairing TUN device).")
    var connectHost = "127.0.0.1"

    @Flag(name: .long, help: "No in-process lossy path: the faults come from the network (tcp and tls-tcp under Benchmarks/soak.sh's TUN impairer).")
    var externalFaults = false

    @Option(name: .long, help: "Seconds one run may take before it counts as failed.")
    var timeout = 600.0

    @Flag(name: .long, help: "Print one JSON object per run.")
    var json = false

    mutating func run() async throws {
        let stacks = stack.isEmpty ? SoakStacks.names : stack.map { $0.lowercased() }
        for name in stacks where !SoakStacks.names.contains(name) {
            throw ValidationError("taps-soak runs \(SoakStacks.names.joined(separator: ", ")), not \(name)")
        }
        var failed = false
        for name in stacks {
            for rate in loss {
                let outcome = try await soak(name, loss: rate)
                // Unbuffered: each line as its run ends, also into a pipe.
                FileHandle.standardOutput.write(Data(((json ? outcome.json(loss: rate) : outcome.line(loss: rate)) + "\n").utf8))
                failed = failed || !outcome.passed
            }
        }
        if failed { throw ExitCode.failure }
    }

    private func soak(_ name: String, loss rate: Double) async throws -> SoakOutcome {
        let stacks = try SoakStacks(stack: name, listenHost: listenHost, connectHost: connectHost)
        let faults = externalFaults ? nil : LossyPath(lossRate: rate, reorderRate: rate, duplicateRate: rate / 2,
                                                      corruptionRate: rate / 2, seed: seed)
        let pattern = SoakPattern(seed: seed)
        let bytes = megabytes << 20
        let limit = timeout
        let datagramsPerSecond = datagramRate
        return try await withThrowingTaskGroup(of: SoakOutcome?.self) { group in
            group.addTask {
                stacks.isDatagram
                    ? try await DatagramSoak(stacks: stacks, faults: faults, bytes: bytes, pattern: pattern,
                                             datagramsPerSecond: datagramsPerSecond).run()
                    : try await ReliableSoak(stacks: stacks, faults: faults, bytes: bytes, pattern: pattern).run()
            }
            group.addTask {
                try await Task.sleep(for: .seconds(limit))
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first ?? SoakOutcome(stack: name, sent: bytes, delivered: 0, elapsed: .seconds(limit), faults: nil,
                                        checks: "", failures: ["not done within \(Int(limit)) s"])
        }
    }
}
