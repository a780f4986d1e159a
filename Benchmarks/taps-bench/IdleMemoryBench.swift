import Foundation
import Taps
import TapsBaseline

/// Memory per idle connection pair: `count` pairs in this process (a client connection and the
/// one the listener accepted for it), each having exchanged one message, then left idle; the
/// growth of the process's resident memory divided by `count`. A warm-up of a few pairs first
/// makes the one-time costs (loops, TLS contexts) part of the starting point.
struct IdleMemoryBench {
    let bench: Bench

    /// sctp and dtls-chunk-sctp (pre-shared keys): each pair is an association of its own, on the
    /// SCTP loop.
    private var sctp: Bool { bench.stack.hasSuffix("sctp") }

    private func server() throws -> Preconnection {
        guard sctp else { return bench.serverPreconnection() }
        return try sctpPreconnection(local: .loopback())
    }

    private func client(port: UInt16) throws -> Preconnection {
        guard sctp else { return bench.clientPreconnection(port: port) }
        return try sctpPreconnection(remote: .loopback(port: port))
    }

    private func sctpPreconnection(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil) throws -> Preconnection {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        var security = SecurityParameters.disabled
        if bench.stack == "dtls-chunk-sctp" {
            security = SecurityParameters()
            var keys = try DTLSChunkPreSharedKeys(jsonFile: bench.chunkKeys ?? "")
            keys.allowsReuseAcrossAssociations = true  // many idle associations under one key file: measured, not secret
            security.dtlsChunkKeys = keys
        }
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: security)
        preconnection.registry = StackRegistry(stacks: StackRegistry.standard.stacks.filter { $0.name == bench.stack })
        return preconnection
    }

    func bytesPerPair(count: Int) async throws -> Double {
        let listener = try await server().listen()
        let client = try client(port: listener.localAddress.port)
        var incoming = listener.connections.makeAsyncIterator()
        var warmUp: [Connection] = []
        for _ in 0..<8 { warmUp += try await pair(client, &incoming) }
        for connection in warmUp { await connection.close() }
        try await Task.sleep(for: .milliseconds(200))
        let before = Self.residentBytes()
        var pairs: [Connection] = []
        pairs.reserveCapacity(2 * count)
        for _ in 0..<count { pairs += try await pair(client, &incoming) }
        try await Task.sleep(for: .milliseconds(500))  // handshake leftovers (tickets, timers) settle
        let after = Self.residentBytes()
        for connection in pairs { await connection.abort() }
        await listener.stop()
        return Double(after - before) / Double(count)
    }

    /// A client connection and its accepted peer, one message exchanged each way.
    private func pair(_ client: Preconnection, _ incoming: inout AsyncStream<Connection>.Iterator) async throws -> [Connection] {
        let connection = try await client.initiate()
        try await connection.send([0x78])
        guard let accepted = await incoming.next() else { throw TransportError.connectionClosed("the listener ended") }
        let request = try await accepted.receive()
        try await accepted.send(request.content)
        _ = try await connection.receive()
        return [connection, accepted]
    }

    /// The process's resident set, after handing freed heap back to the system (malloc_trim), so
    /// that only memory in use counts.
    static func residentBytes() -> Int {
        taps_baseline_trim_heap()
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }
}
