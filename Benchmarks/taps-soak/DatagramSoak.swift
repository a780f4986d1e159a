import Foundation
import Synchronization
import Taps

/// A datagram stack's soak: the client sends numbered datagrams of the pattern at a fixed rate;
/// the listener's connection checks each one against its number and counts what arrived, what
/// arrived twice and what arrived altered. Loss is the path's to decide; integrity is the stack's.
struct DatagramSoak {
    let stacks: SoakStacks
    let faults: LossyPath?
    let bytes: Int
    let pattern: SoakPattern
    /// Fits one DTLS record in a 1,280-byte path with room to spare.
    let datagramSize = 1_100
    let datagramsPerSecond: Int

    private final class Tally: Sendable {
        struct Counts {
            var seen: [Bool]
            var delivered = 0
            var duplicates = 0
            var altered = 0
            var lastArrival = ContinuousClock.now
        }
        let counts: Mutex<Counts>
        init(count: Int) { counts = Mutex(Counts(seen: Array(repeating: false, count: count))) }
    }

    func run() async throws -> SoakOutcome {
        let count = (bytes + datagramSize - 1) / datagramSize
        let listener = try await stacks.server().listen()
        let client = stacks.client(port: listener.localAddress.port, faults: faults)
        let tally = Tally(count: count)
        let started = ContinuousClock.now
        let receiver = Task { await receive(from: listener, into: tally) }
        let connection = try await client.initiate(timeout: .seconds(30))
        let stack = connection.stack.name
        // Paced: a datagram stack has no flow control, and the point is the path's faults, not
        // the receiver's socket buffer overflowing.
        let interval = Duration.seconds(1) / datagramsPerSecond * 64
        var next = ContinuousClock.now
        for sequence in 0..<count {
            try await connection.send(datagram(sequence))
            if sequence % 64 == 63 {
                next += interval
                try await Task.sleep(until: next, clock: .continuous)
            }
        }
        // Done when nothing has arrived for half a second.
        while ContinuousClock.now - tally.counts.withLock({ $0.lastArrival }) < .milliseconds(500) {
            try await Task.sleep(for: .milliseconds(100))
        }
        let counters = await connection.lossyPathCounters
        await connection.close()
        await listener.stop()
        receiver.cancel()
        let elapsed = ContinuousClock.now - started
        let counts = tally.counts.withLock { $0 }
        var failures: [String] = []
        if counts.delivered == 0 { failures.append("no datagram arrived") }
        let secured = stack != "udp"
        if secured && counts.altered > 0 { failures.append("\(counts.altered) altered datagrams delivered on a secure stack") }
        if secured && counts.duplicates > 0 { failures.append("\(counts.duplicates) replayed datagrams delivered on a secure stack") }
        let checks = "\(counts.delivered) of \(count) datagrams arrived (\(String(format: "%.1f", 100 * Double(counts.delivered) / Double(count))) %), "
            + "\(counts.duplicates) twice, \(counts.altered) altered"
        return SoakOutcome(stack: stack, sent: count * datagramSize, delivered: counts.delivered * datagramSize, elapsed: elapsed,
                           faults: counters, checks: checks, failures: failures)
    }

    /// Datagram `sequence`: its number (8 bytes, little-endian), then the pattern at its offset.
    private func datagram(_ sequence: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(sequence).littleEndian, Array.init) + pattern.bytes(at: sequence * datagramSize, count: datagramSize - 8)
    }

    private func receive(from listener: Listener, into tally: Tally) async {
        for await connection in listener.connections {
            Task {
                while let message = try? await connection.receive() {
                    check(message.content, into: tally)
                }
            }
        }
    }

    private func check(_ datagram: [UInt8], into tally: Tally) {
        tally.counts.withLock { counts in
            counts.lastArrival = .now
            guard datagram.count == datagramSize else { counts.altered += 1; return }
            let sequence = datagram.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
            guard counts.seen.indices.contains(sequence),
                  pattern.mismatches(in: datagram.dropFirst(8), at: sequence * datagramSize) == 0 else {
                counts.altered += 1
                return
            }
            if counts.seen[sequence] { counts.duplicates += 1; return }
            counts.seen[sequence] = true
            counts.delivered += 1
        }
    }
}
