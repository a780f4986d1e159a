import Foundation
import Taps

/// The sctp and tls-sctp stacks' bulk throughput through the public API, on one stream or several
/// of one association, and sctp's C baseline: usrsctp's own UDP encapsulation (taps-sctp-baseline).
/// tls-sctp's and dtls-chunk-sctp's baseline is Taps' plain sctp, measured the same way. As two real endpoints would be, each side runs in its own
/// process, for both: the Taps server is this program started again with `--sctp-server`, the
/// baseline forks its server. (A process runs all its SCTP on one loop, so both ends in one process
/// would share one core.)
struct SCTPBench {
    let mtu: Int
    /// tls-sctp's identity (certificate and key files), or nil for plain sctp.
    var tls: (cert: String, key: String)? = nil
    /// Streams of the association that carry the transfer side by side.
    var streams = 1
    /// dtls-chunk-sctp's key management; nil for the other stacks.
    var chunk: DTLSChunkSetup? = nil

    static func preconnection(mtu: Int, tls: (cert: String, key: String)?, chunk: DTLSChunkSetup? = nil, local: LocalEndpoint? = nil,
                              remote: RemoteEndpoint? = nil) throws -> Preconnection {
        // tls-sctp is a byte stream on each stream; sctp keeps message boundaries.
        var transport = tls == nil ? TransportProperties.reliableMessage : .reliableInOrderStream
        transport.multistreaming = .require
        transport.sctp.pathMTU = mtu
        var security = SecurityParameters.disabled
        if let tls {
            if local != nil {
                security = .server(identity: .pemFiles(certificate: tls.cert, key: tls.key))
            } else {
                security = .clientDefault
                security.trustedRoots = .pem(file: tls.cert)
            }
        }
        var stack = tls == nil ? ProtocolStack.sctp : .tlsSCTP
        if let chunk {
            security = try chunk.security()
            stack = .dtlsChunkSCTP
        }
        var preconnection = Preconnection(local: local, remote: remote, transport: transport, security: security)
        preconnection.registry = StackRegistry(stacks: [stack])
        return preconnection
    }

    /// The server process, started: this program again with `--sctp-server`, which prints its port.
    struct ServerProcess {
        let process: Process
        var lines: LineReader
        let port: UInt16

        func stop() { if process.isRunning { process.terminate() } }
    }

    /// Starts the server process: a receiver counting a bulk transfer, or an echo (`--latency`).
    func startServer(echo: Bool = false) throws -> ServerProcess {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        server.arguments = ["--sctp-server", "--mtu", "\(mtu)", "--streams", "\(streams)"] + (echo ? ["--latency"] : [])
            + (tls.map { ["--server-cert", $0.cert, "--server-key", $0.key] } ?? [])
            + (chunk?.serverArguments ?? [])
        let output = Pipe()
        server.standardOutput = output
        try server.run()
        var lines = LineReader(output.fileHandleForReading)
        guard let portLine = lines.next(), let port = UInt16(portLine) else {
            if server.isRunning { server.terminate() }
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "the sctp server process did not report its port"])
        }
        return ServerProcess(process: server, lines: lines, port: port)
    }

    /// The client's side of this set-up, to the server process on `port`.
    func clientPreconnection(port: UInt16) throws -> Preconnection {
        // tls-sctp: the certificate is for localhost.
        try Self.preconnection(mtu: mtu, tls: tls, chunk: chunk, remote: tls == nil ? .loopback(port: port) : .host("localhost", port: port))
    }

    /// MB/s (10^6 bytes) as the server process received them on all streams, between its first and
    /// last message.
    func throughput(seconds: Double, messageSize: Int) async throws -> Double {
        let serverProcess = try startServer()
        defer { serverProcess.stop() }
        let server = serverProcess.process
        let client = try clientPreconnection(port: serverProcess.port)
        try await BulkTransfer.send(client, streams: streams, seconds: seconds, messageSize: messageSize)
        var lines = serverProcess.lines
        guard let resultLine = lines.next(), let megabytesPerSecond = Double(resultLine) else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "the sctp server process reported no figure"])
        }
        if chunk != nil, let counters = lines.next() {
            // Diagnostics for Docs/Benchmarks.md: the AEAD cost per packet comes from these and a profile.
            FileHandle.standardError.write(Data("receiver: protected packets opened, sealed, CPU seconds, rekeys: \(counters)\n".utf8))
        }
        server.waitUntilExit()
        return megabytesPerSecond
    }

    /// The server process: prints its port, receives `streams` connections until each peer's final
    /// message, prints the MB/s it measured over all of them.
    static func serve(mtu: Int, tls: (cert: String, key: String)?, chunk: DTLSChunkSetup?, streams: Int, echo: Bool) async throws {
        let listener = try await preconnection(mtu: mtu, tls: tls, chunk: chunk, local: .loopback()).listen()
        FileHandle.standardOutput.write(Data("\(listener.localAddress.port)\n".utf8))
        if echo {  // --latency: echoes the first connection until it ends
            var incoming = listener.connections.makeAsyncIterator()
            guard let connection = await incoming.next() else { return }
            await Task(executorPreference: connection.loop) { await LatencyBench.echo(on: connection) }.value
            return
        }
        let (bytes, elapsed) = await BulkTransfer.receive(on: listener, connections: streams)
        FileHandle.standardOutput.write(Data("\(BulkTransfer.megabytesPerSecond(bytes, elapsed))\n".utf8))
        // dtls-chunk-sctp: packets the receiver opened and sealed (its SACKs), and its CPU time.
        if let status = BulkTransfer.receiverChunkStatus.withLock({ $0 }) {
            let counters = status.counters
            FileHandle.standardOutput.write(Data("\(counters.receivedProtected) \(counters.sentProtected) \(CPUTime.now()) rekeys \(status.rekeys)\n".utf8))
        }
    }

    /// Runs taps-sctp-baseline (built beside this binary) and reads its MB/s. usrsctp's threaded
    /// stack now and then resets the association mid-run; such a run has no figure and is repeated.
    static func baseline(seconds: Double, messageSize: Int, mtu: Int) throws -> Double {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("taps-sctp-baseline")
        var lastOutput = ""
        for attempt in 0..<3 {
            let process = Process()
            process.executableURL = executable
            // UDP ports of its own per attempt (it uses this one and the next).
            let port = 20_000 + (Int(getpid()) * 2 + attempt * 2) % 20_000
            process.arguments = ["\(seconds)", "\(messageSize)", "\(mtu)", "\(port)"]
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            lastOutput = String(decoding: data, as: UTF8.self)
            if process.terminationStatus == 0, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let mbps = object["mbps"] as? Double {
                return mbps
            }
        }
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "taps-sctp-baseline failed three times; it printed: \(lastOutput)"])
    }
}

/// Lines from a child's output, read as they arrive.
struct LineReader {
    let handle: FileHandle
    var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    mutating func next() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer = Data(buffer[(newline + 1)...])
                return line
            }
            let chunk = handle.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
    }
}

/// dtls-chunk-sctp's key management in a bulk measurement: pre-shared parameters from a key file,
/// or DTLS 1.3 handshakes with the bench's certificate at both ends, rekeying every `rekeyBytes`.
struct DTLSChunkSetup {
    var keyManagement: AssociationSetupBench.Kind
    var keyFile: String
    var cert: String
    var key: String
    /// Bytes each end sends under one key context before it rekeys (DTLS 1.3); nil: never.
    var rekeyBytes: Int?

    func security() throws -> SecurityParameters {
        var security = SecurityParameters()
        switch keyManagement {
        case .psk, .tlsSCTP:
            var keys = try DTLSChunkPreSharedKeys(jsonFile: keyFile)
            keys.allowsReuseAcrossAssociations = true  // an association per round under one key file: measured, not secret
            security.dtlsChunkKeys = keys
        case .dtls13, .tls13:
            security.localIdentity = .pemFiles(certificate: cert, key: key)
            security.trustedRoots = .pem(file: cert)
            security.dtlsChunkKeyManagement = [keyManagement == .tls13 ? .tls13 : .dtls13]
            security.dtlsChunkRekey = DTLSChunkRekeyPolicy(afterBytes: rekeyBytes, afterPackets: nil, afterTime: nil)
        }
        return security
    }

    /// What the server process needs to make the same set-up.
    var serverArguments: [String] {
        ["--chunk-keys", keyFile, "--km", keyManagement.rawValue, "--server-cert", cert, "--server-key", key]
            + ["--rekey-mb", "\((rekeyBytes ?? 0) >> 20)"]
    }
}
