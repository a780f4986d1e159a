import ArgumentParser
import Foundation
import Taps

/// Several streams of one SCTP association side by side, one per topic: `clone()` opens each topic's
/// stream, and the listener sees each new stream as a connection in the same group. Messages on
/// one topic stay in order; a slow topic does not hold the others back (no head-of-line blocking
/// across streams). With `--tls` each topic's stream carries its own TLS connection (tls-sctp, RFC
/// 3436), the later topics resuming the first one's session, and a framer keeps message boundaries
/// over TLS's byte stream.
@main
struct TapsChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taps-chat",
        abstract: "Chat on several topics over one SCTP association (one stream per topic), on loopback.")

    @Option(name: .long, help: "Topics, comma-separated; each gets a stream of its own.")
    var topics = "general,random,build"

    @Option(name: .long, help: "Messages per topic.")
    var messages = 3

    @Flag(name: .long, help: "TLS on every topic's stream (tls-sctp), with a certificate made for this run.")
    var tls = false

    mutating func run() async throws {
        let topicNames = topics.split(separator: ",").map(String.init)
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        var serverSecurity = SecurityParameters.disabled, clientSecurity = SecurityParameters.disabled
        if tls {
            let (identity, certificatePEM) = try SecurityParameters.Identity.selfSigned()
            serverSecurity = .server(identity: identity)
            clientSecurity = .clientDefault
            clientSecurity.trustedRoots = .pem(.bytes(certificatePEM))
        }
        let framer: (any MessageFramer)? = tls ? LengthPrefixFramer() : nil
        let listener = try await Preconnection(local: .loopback(), transport: transport, security: serverSecurity,
                                               framer: framer).listen()
        print("listener: \(listener.stack.name) on \(listener.localAddress)")
        let expected = topicNames.count * messages
        let server = Task {
            // Every topic stream arrives as a connection; all of them belong to one group.
            try await withThrowingTaskGroup(of: Int.self) { group in
                var seen = 0
                for await connection in listener.connections {
                    group.addTask {
                        var count = 0
                        for try await message in connection.messages {
                            if message.isFinal && message.content.isEmpty { break }
                            let security = await connection.securityDetails.map { $0.resumed ? ", TLS resumed" : ", TLS" } ?? ""
                            print("  server (group of \(connection.group.count)\(security)): \(message.text)")
                            try await connection.send("ack: \(message.text)")
                            count += 1
                        }
                        return count
                    }
                    seen += 1
                    if seen == topicNames.count { break }
                }
                return try await group.reduce(0, +)
            }
        }

        let first = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: transport,
                                            security: clientSecurity, framer: framer).initiate()
        var streams = [first]
        for _ in topicNames.dropFirst() { streams.append(try await first.clone()) }
        print("client: \(streams.count) streams in one association (group of \(first.group.count)) on \(first.stack.name)")
        let pairs = Array(zip(topicNames, streams))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in pairs.indices {
                let (topic, connection) = pairs[index]
                let count = messages
                group.addTask {
                    for number in 1...count {
                        try await connection.send("#\(topic) message \(number)")
                        let ack = try await connection.receive()
                        print("client #\(topic): \(ack.text)")
                    }
                }
            }
            try await group.waitForAll()
        }
        for connection in streams { await connection.close() }
        let delivered = try await server.value
        print("delivered \(delivered) of \(expected) messages")
        await listener.stop()
        if delivered != expected { throw ExitCode.failure }
    }
}
