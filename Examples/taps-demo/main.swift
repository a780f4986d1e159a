import ArgumentParser
import Foundation
import Taps

/// The README's demo: for each kind of service an application might ask for, selection picks a
/// stack; a listener and a client in this process then exchange messages over loopback.
@main
struct TapsDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taps-demo",
        abstract: "Show stack selection, security details, messaging and throughput on loopback.")

    @Option(name: .long, help: "Run only the scenario whose chosen stack has this name (tls-tcp, dtls-udp, tcp, udp, sctp, tls-sctp, dtls-chunk-sctp).")
    var stack: String?

    @Option(name: .long, help: "Megabytes to echo in the throughput step of stream stacks.")
    var megabytes: Int = 64

    @Flag(name: .long, help: "Print the RFC 8922 capability table of the stack registry (Markdown, as in Docs/Security.md) and exit.")
    var capabilityTable = false

    mutating func run() async throws {
        if capabilityTable {
            print(SecurityCapabilityTable.markdown(), terminator: "")
            return
        }
        let (identity, certificatePEM) = try SecurityParameters.Identity.selfSigned()
        var clientSecurity = SecurityParameters.clientDefault
        clientSecurity.trustedRoots = .pem(.bytes(certificatePEM))
        // Both ends hold the same pre-shared parameters (in practice: a key file each end reads).
        var chunkSecurity = SecurityParameters()
        chunkSecurity.dtlsChunkKeys = .random()
        // DTLS 1.3 key management authenticates both ends: here both present the same certificate
        // and trust it.
        var mutualSecurity = SecurityParameters()
        mutualSecurity.localIdentity = identity
        mutualSecurity.trustedRoots = .pem(.bytes(certificatePEM))
        // The same, keyed by TLS 1.3 (draft-porfiri) instead: offered only that method.
        var tlsKeyedSecurity = mutualSecurity
        tlsKeyedSecurity.dtlsChunkKeyManagement = [.tls13]
        let scenarios: [Scenario] = [
            Scenario(title: "Secure, reliable messages", transport: .reliableMessage,
                     server: .server(identity: identity), client: clientSecurity, framer: LengthPrefixFramer()),
            Scenario(title: "Reliable messages without security", transport: .reliableMessage,
                     server: .disabled, client: .disabled, framer: LengthPrefixFramer()),
            Scenario(title: "Secure datagrams", transport: .unreliableDatagram,
                     server: .server(identity: identity), client: clientSecurity, framer: nil),
            Scenario(title: "Unreliable datagrams without security", transport: .unreliableDatagram,
                     server: .disabled, client: .disabled, framer: nil),
            Scenario(title: "Messages on several streams of one association", transport: {
                var transport = TransportProperties.reliableMessage
                transport.multistreaming = .require
                return transport
            }(), server: .disabled, client: .disabled, framer: nil),
            Scenario(title: "TLS on each of several streams (RFC 3436)", transport: {
                var transport = TransportProperties.reliableMessage
                transport.multistreaming = .require
                return transport
            }(), server: .server(identity: identity), client: clientSecurity, framer: LengthPrefixFramer(), streams: 4),
            Scenario(title: "Every SCTP packet protected by the DTLS chunk (pre-shared keys)", transport: {
                var transport = TransportProperties.reliableMessage
                transport.multistreaming = .require
                return transport
            }(), server: chunkSecurity, client: chunkSecurity, framer: nil, streams: 3),
            Scenario(title: "The DTLS chunk keyed by a DTLS 1.3 handshake in the association, then rekeyed", transport: {
                var transport = TransportProperties.reliableMessage
                transport.multistreaming = .require
                return transport
            }(), server: mutualSecurity, client: mutualSecurity, framer: nil, streams: 2),
            Scenario(title: "The DTLS chunk keyed by a TLS 1.3 handshake in the association, then rekeyed", transport: {
                var transport = TransportProperties.reliableMessage
                transport.multistreaming = .require
                return transport
            }(), server: mutualSecurity, client: tlsKeyedSecurity, framer: nil, streams: 2),
        ]
        for scenario in scenarios {
            let chosen = scenario.clientPreconnection(port: 1).candidateStacks().first { $0.rank == 0 }?.stack.name
            if let stack, chosen != stack { continue }
            try await scenario.run(megabytes: megabytes)
        }
    }
}

struct Scenario {
    let title: String
    let transport: TransportProperties
    let server: SecurityParameters
    let client: SecurityParameters
    let framer: (any MessageFramer)?
    /// Clones of the first connection to open on a multistreaming stack, each its own stream.
    var streams = 1

    func clientPreconnection(port: UInt16) -> Preconnection {
        Preconnection(remote: .host("localhost", port: port), transport: transport, security: client, framer: framer)
    }

    func run(megabytes: Int) async throws {
        print("== \(title)")
        let listener = try await Preconnection(local: .loopback(), transport: transport, security: server, framer: framer).listen()
        let echo = Task {
            for await connection in listener.connections {
                Task {
                    do {
                        for try await message in connection.messages {
                            if message.content.isEmpty && message.isFinal { break }
                            try await connection.send(message.content)
                        }
                        await connection.close()
                    } catch {
                        await connection.abort()
                    }
                }
            }
        }
        defer { echo.cancel() }

        let preconnection = clientPreconnection(port: listener.localAddress.port)
        print("candidate stacks:")
        print(preconnection.candidateStacks().table.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        let connection = try await preconnection.initiate()
        print("chosen stack: \(connection.stack.name) (listener: \(listener.stack.name) on \(listener.localAddress))")
        if let details = await connection.securityDetails {
            print("security: \(details.protocolVersion), \(details.cipherSuite), peer \(details.peerCertificateSubject ?? "-")")
        }
        for text in ["hello", "from", "swift-taps"] {
            try await connection.send(text)
            let reply = try await connection.receive()
            print("  sent \"\(text)\", echoed \"\(reply.text)\" (complete message: \(reply.isComplete))")
        }
        try await openStreams(from: connection)
        try await rekey(connection)
        try await measure(connection, megabytes: megabytes)
        await connection.close()
        await listener.stop()
        print("")
    }

    /// Clones on a multistreaming stack: each a new stream of the same association; on tls-sctp each
    /// stream has its own TLS connection, and the clones resume the first stream's session; on
    /// dtls-chunk-sctp the association's protection covers them all.
    private func openStreams(from connection: Connection) async throws {
        guard streams > 1 else { return }
        for index in 1..<streams {
            let clone = try await connection.clone()
            try await clone.send("stream \(index)")
            let reply = try await clone.receive()
            let details = await clone.securityDetails
            // Only a TLS stream has a handshake of its own; the DTLS chunk protects the whole association.
            let security = details.map { details in
                details.protocolVersion.hasPrefix("TLS") ? "\(details.protocolVersion), \(details.resumed ? "resumed" : "full handshake")" : details.protocolVersion
            } ?? "no security"
            print("  clone \(index): \(security), echoed \"\(reply.text)\"")
            await clone.close()
        }
    }

    /// dtls-chunk-sctp with DTLS 1.3 or TLS 1.3 key management: a new key management connection
    /// replaces the keys, and the epoch of what goes out advances.
    private func rekey(_ connection: Connection) async throws {
        guard let before = await connection.dtlsChunkStatus, let method = before.agreement?.method, method == .dtls13 || method == .tls13 else { return }
        let events = await connection.events()
        try await connection.updateKeys()
        for await event in events { if case .keysUpdated = event { break } }
        let after = await connection.dtlsChunkStatus
        print("  rekeyed: send key context \(before.sendKeyContext?.description ?? "-") -> \(after?.sendKeyContext?.description ?? "-")")
    }

    /// Echo throughput: pipelined for streams, lock-step for datagrams (which may be lost).
    private func measure(_ connection: Connection, megabytes: Int) async throws {
        let started = ContinuousClock.now
        var bytes = 0
        var datagramSize = 0
        if connection.stack.isByteStream {
            let message = [UInt8](repeating: 0x61, count: 256 * 1024)
            let count = max(1, megabytes * 4)
            async let received: Int = {
                var total = 0
                for _ in 0..<count { total += try await connection.receive().content.count }
                return total
            }()
            for _ in 0..<count { try await connection.send(message) }
            bytes = try await received
        } else {
            // One datagram each: DTLS fits a little less than 1200 bytes in one record at a 1280-byte MTU.
            let size = min(1200, await connection.sendMsgMaxLen ?? 1200)
            datagramSize = size
            let message = [UInt8](repeating: 0x61, count: size)
            for _ in 0..<2000 {
                try await connection.send(message)
                bytes += try await connection.receive().content.count
            }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if connection.stack.isByteStream {
            print(String(format: "throughput: echoed %.1f MB in %.2f s, %.0f MB/s each way", Double(bytes) / 1e6, seconds, Double(bytes) / 1e6 / seconds))
        } else {
            print(String(format: "round trips: 2000 messages of %d bytes echoed one at a time, %.0f us each", datagramSize, seconds / 2000 * 1e6))
        }
    }
}
