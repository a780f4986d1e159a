import Foundation
import Taps

/// The sctp stack's bulk throughput through the public API (both ends in this process, on the SCTP
/// loop), and the baseline: usrsctp's own UDP encapsulation in a separate process (taps-sctp-baseline).
struct SCTPBench {
    let mtu: Int

    private func preconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil) -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        transport.sctp.pathMTU = mtu
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: .disabled)
        preconnection.registry = StackRegistry(stacks: [.sctp])
        return preconnection
    }

    /// MB/s (10^6 bytes) as the server received them, between its first and last message.
    func throughput(seconds: Double, messageSize: Int) async throws -> Double {
        let listener = try await preconnection(local: .loopback()).listen()
        // The receiving side runs on the SCTP loop too: both connections live there.
        let server = Task(executorPreference: listener.loop) { () -> (Int, Duration) in
            var iterator = listener.connections.makeAsyncIterator()
            guard let connection = await iterator.next() else { return (0, .zero) }
            var bytes = 0
            var first: ContinuousClock.Instant?
            var last = ContinuousClock.now
            while let message = try? await connection.receive() {
                if message.isFinal && message.content.isEmpty { break }
                if first == nil { first = .now }
                bytes += message.content.count
                last = .now
            }
            await connection.close()
            return (bytes, first.map { last - $0 } ?? .zero)
        }
        let client = preconnection(remote: .loopback(port: listener.localAddress.port))
        // The sender runs on the SCTP loop, where its connection lives: no thread hop per message.
        try await BulkSender.run(client, on: listener.loop, seconds: seconds, messageSize: messageSize)
        let (bytes, elapsed) = await server.value
        await listener.stop()
        return BulkSender.megabytesPerSecond(bytes, elapsed)
    }

    /// Runs taps-sctp-baseline (built beside this binary) and reads its MB/s.
    static func baseline(seconds: Double, messageSize: Int, mtu: Int) throws -> Double {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("taps-sctp-baseline")
        let process = Process()
        process.executableURL = executable
        let port = 20_000 + Int(getpid() % 20_000)
        process.arguments = ["\(seconds)", "\(messageSize)", "\(mtu)", "\(port)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], let mbps = object["mbps"] as? Double else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "taps-sctp-baseline printed: \(text)"])
        }
        return mbps
    }
}
