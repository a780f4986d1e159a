import Taps

/// A reliable stack's soak: the client sends the pattern in messages and closes; the listener's
/// connection checks every byte at its offset and that the stream ends exactly after the last one.
struct ReliableSoak {
    let stacks: SoakStacks
    let faults: LossyPath?
    let bytes: Int
    let pattern: SoakPattern
    let messageSize = 16_384

    struct Received {
        var bytes = 0
        var mismatches = 0
        var endedCleanly = false
        var error: String?
    }

    func run() async throws -> SoakOutcome {
        let listener = try await stacks.server().listen()
        let client = stacks.client(port: listener.localAddress.port, faults: faults)
        defer { Task { await listener.stop() } }
        let started = ContinuousClock.now
        async let received = receive(from: listener)
        let connection = try await client.initiate(timeout: .seconds(30))
        let stack = connection.stack.name
        var offset = 0
        while offset < bytes {
            let count = min(messageSize, bytes - offset)
            try await connection.send(pattern.bytes(at: offset, count: count))
            offset += count
        }
        await connection.close()
        let result = await received
        let counters = await connection.lossyPathCounters
        let elapsed = ContinuousClock.now - started
        var failures: [String] = []
        if result.bytes != bytes { failures.append("received \(result.bytes) of \(bytes) bytes") }
        if result.mismatches > 0 { failures.append("\(result.mismatches) bytes differ from what was sent") }
        if !result.endedCleanly { failures.append("the stream did not end cleanly") }
        if let error = result.error { failures.append(error) }
        return SoakOutcome(stack: stack, sent: bytes, delivered: result.bytes, elapsed: elapsed, faults: counters,
                           checks: "\(result.bytes) bytes checked in order, \(result.mismatches) differ", failures: failures)
    }

    private func receive(from listener: Listener) async -> Received {
        var received = Received()
        var connections = listener.connections.makeAsyncIterator()
        guard let connection = await connections.next() else {
            received.error = "the listener delivered no connection"
            return received
        }
        do {
            while true {
                let message = try await connection.receive()
                received.mismatches += pattern.mismatches(in: message.content, at: received.bytes)
                received.bytes += message.content.count
                if message.isFinal {
                    received.endedCleanly = true
                    break
                }
            }
        } catch {
            received.error = "the receiving side failed: \(error)"
        }
        await connection.close()
        return received
    }
}
