import ArgumentParser
import Foundation
import Taps
import TapsBaseline

/// Throughput and handshake-rate benchmark: the same transfer through the public Taps API and
/// through a C program on libuv + OpenSSL (the baseline), in the same run, on loopback.
@main
struct TapsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taps-bench",
        abstract: "Measure Taps throughput against a C baseline (libuv + OpenSSL) on loopback.",
        discussion: "Build in release mode: swift run -c release taps-bench --stack tls-tcp --seconds 3")

    @Option(name: .long, help: "Stack to measure (tcp, tls-tcp, udp, dtls-udp, sctp, tls-sctp, dtls-chunk-sctp); repeat for several.")
    var stack: [String] = []

    @Option(name: .long, help: "Seconds per measurement.")
    var seconds: Double = 3

    @Option(name: .long, help: "Bytes per send (default 65536; 64 with --latency; udp and dtls-udp bulk send the largest datagram the stack allows).")
    var messageSize: Int?

    /// The bytes per send of this run.
    var messageBytes: Int { messageSize ?? (latency ? 64 : 65_536) }

    @Flag(name: .long, help: "tcp / tls-tcp: a listener spreading accepted connections over a loop per core against one keeping them on one loop: establishments per second and the throughput of 8 connections at once.")
    var acceptLoops = false

    @Option(name: .long, help: "tcp / tls-tcp / sctp / dtls-chunk-sctp: open this many connection pairs (on the SCTP stacks, associations), exchange one message on each, and report the resident memory each idle pair costs.")
    var idleConnections: Int?

    @Flag(name: .long, help: "TLS: an RSA-2048 server identity instead of P-256 (its handshakes cost the server far more than the client).")
    var rsa = false

    @Flag(name: .long, help: "Measure round-trip times of one message at a time (p50 / p99 / p99.9 from an HDR histogram) instead of throughput.")
    var latency = false

    @Flag(name: .long, help: "Measure connection establishments per second instead of bulk throughput (tls-sctp: stream set-ups, resumeFirst against parallel).")
    var handshakes = false

    @Option(name: .long, help: "sctp / tls-sctp bulk: streams of one association carrying the transfer side by side.")
    var streams = 1

    @Flag(name: .long, help: "tls-sctp --handshakes: TLS 1.2 only (abbreviated handshakes without a key exchange).")
    var tls12 = false

    @Option(name: .long, help: "dtls-chunk-sctp: the key management, dtls13, tls13 or psk (pre-shared parameters); --handshakes measures its association set-ups against tls-sctp's.")
    var km: AssociationSetupBench.Kind = .dtls13

    @Flag(name: .long, help: "dtls-chunk-sctp --handshakes --km dtls13|tls13: each set-up resumes the session of the one before (a DTLS 1.3 or TLS 1.3 ticket) instead of a full handshake.")
    var resume = false

    @Option(name: .long, help: "dtls-chunk-sctp bulk with --km dtls13|tls13: each end rekeys after sending this many MiB under one key context (0: never).")
    var rekeyMb = 64

    @Flag(name: .long, help: "Print one JSON object per stack.")
    var json = false

    @Option(name: .long, help: "Run only one side (taps or baseline), e.g. for profiling.")
    var only: String?

    @Option(name: .long, help: "sctp: path MTU in bytes (1280 for real networks; loopback allows more).")
    var mtu: Int = 1280

    @Option(name: .long, help: "Measure this many times, Taps and the baseline in turn; report the medians.")
    var rounds = 1

    @Flag(inversion: .prefixedNo, help: "tcp / tls-tcp: bind the server side to CPU 1 and the client side to CPU 0, for Taps and the baseline alike.")
    var pin = true

    @Flag(name: .long, help: "tcp / tls-tcp bulk: also pair each Taps side with the other's C side (Taps client to C server, C client to Taps server), to tell which side costs throughput.")
    var mixed = false

    @Flag(name: .long, help: .hidden)
    var sctpServer = false

    @Option(name: .long, help: .hidden)
    var serverCert: String?

    @Option(name: .long, help: .hidden)
    var serverKey: String?

    @Option(name: .long, help: .hidden)
    var chunkKeys: String?

    mutating func run() async throws {
        if sctpServer {  // the receiving process of an sctp or tls-sctp measurement (SCTPBench)
            let tls = serverCert.flatMap { cert in serverKey.map { (cert: cert, key: $0) } }
            let chunk = chunkKeys.map { keyFile in
                DTLSChunkSetup(keyManagement: km, keyFile: keyFile, cert: serverCert ?? "", key: serverKey ?? "", rekeyBytes: rekeyMb > 0 ? rekeyMb << 20 : nil)
            }
            try await SCTPBench.serve(mtu: mtu, tls: chunk == nil ? tls : nil, chunk: chunk, streams: streams, echo: latency)
            Glibc.exit(0)
        }
        let stacks = stack.isEmpty ? ["tcp", "tls-tcp"] : stack.map { $0.lowercased() }
        for name in stacks where !Self.stacks.contains(name) {
            throw ValidationError("taps-bench measures \(Self.stacks.joined(separator: ", ")), not \(name)")
        }
        if latency && (handshakes || mixed) { throw ValidationError("--latency measures round trips; leave out --handshakes and --mixed") }
        if km == .tlsSCTP { throw ValidationError("--km takes dtls13, tls13 or psk; tls-sctp is the set-up benchmark's baseline") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("taps-bench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        guard taps_baseline_make_identity(cert, key, rsa ? 2048 : 0) == 0 else { throw ValidationError("could not write a test identity") }
        let chunkKeyFile = directory.appendingPathComponent("chunk-keys.json").path
        guard FileManager.default.createFile(atPath: chunkKeyFile, contents: Data(DTLSChunkPreSharedKeys.random().json.utf8)) else {
            throw ValidationError("could not write a DTLS chunk key file")
        }

        // Both ends run in this process. Unbound, the kernel's wake-affine placement sometimes puts
        // the two loops (which wake each other for every batch) on one core of two, for whichever
        // side blocks more; bound, each side has a core, Taps and the baseline alike.
        let serverLoop = EventLoop(name: "bench-server", cpu: pinned ? 1 : nil)
        let clientLoop = EventLoop(name: "bench-client", cpu: pinned ? 0 : nil)
        if pinned { taps_baseline_bind_cpus(1, 0) }
        defer {
            serverLoop.shutdown()
            clientLoop.shutdown()
        }
        for name in stacks {
            if ["sctp", "udp", "dtls-udp"].contains(name) && handshakes {
                throw ValidationError("--handshakes measures tcp, tls-tcp, tls-sctp and dtls-chunk-sctp")
            }
            if acceptLoops {
                guard ["tcp", "tls-tcp"].contains(name) else { throw ValidationError("--accept-loops measures tcp and tls-tcp") }
                try await measureAcceptSpread(name, cert: cert, key: key)
                continue
            }
            var bench = Bench(stack: name, cert: cert, key: key, serverLoop: serverLoop, clientLoop: clientLoop)
            bench.chunkKeys = chunkKeyFile
            if let idleConnections {
                guard ["tcp", "tls-tcp", "sctp", "dtls-chunk-sctp"].contains(name) else {
                    throw ValidationError("--idle-connections measures tcp, tls-tcp, sctp and dtls-chunk-sctp")
                }
                let perPair = try await IdleMemoryBench(bench: bench).bytesPerPair(count: idleConnections)
                if json {
                    print("{\"stack\": \"\(name)\", \"idle_pairs\": \(idleConnections), \"bytes_per_pair\": \(Int(perPair))}")
                } else {
                    print("\(name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(idleConnections) idle pairs: \(String(format: "%.1f", perPair / 1024)) KB each")
                }
                continue
            }
            if latency {
                try await measureLatency(bench)
                continue
            }
            let runTaps = only != "baseline", runBaseline = only != "taps"
            let unit = handshakes ? "handshakes_per_second" : "mbps"
            var pairs: [(ours: Double, baseline: Double)] = []
            // Bulk tcp / tls-tcp: MB moved per CPU-second the process spent (both endpoints), which
            // a busy neighbour on this VM disturbs far less than MB/s.
            var efficiency: [(ours: Double, baseline: Double)] = []
            var baselineError: Int32 = 0
            // --mixed: (Taps client to C server, C client to Taps server) per round.
            var mixes: [(tapsSending: Double, tapsReceiving: Double)] = []
            // udp / dtls-udp: the share of datagrams lost, and the datagram size Taps' connection allowed.
            var losses: [(ours: Double, baseline: Double)] = []
            var datagramSize: Int?
            // Taps and the baseline take turns, so a change in the machine's load hits both alike,
            // and each goes first in every other round, so whatever a round's first run leaves
            // behind in the process does too.
            for round in 0..<max(1, rounds) {
                var ours = Measurement(), baseline = Measurement()
                for tapsTurn in round % 2 == 0 ? [true, false] : [false, true] {
                    if tapsTurn && runTaps {
                        ours = try await measureTaps(bench)
                        datagramSize = datagramSize ?? ours.datagramSize
                    }
                    if !tapsTurn && runBaseline { baseline = try await measureBaseline(bench, datagramSize: datagramSize) }
                }
                if ours.loss != nil || baseline.loss != nil { losses.append((ours.loss ?? 0, baseline.loss ?? 0)) }
                if baseline.error != 0 { baselineError = baseline.error }
                if mixed && !handshakes && !name.hasSuffix("sctp") {
                    mixes.append((try await bench.throughputToBaselineServer(seconds: seconds, messageSize: messageBytes),
                                  try await bench.throughputFromBaselineClient(seconds: seconds, messageSize: messageBytes)))
                }
                pairs.append((ours.value, baseline.value))
                if ours.perCPU != nil || baseline.perCPU != nil { efficiency.append((ours.perCPU ?? 0, baseline.perCPU ?? 0)) }
            }
            report(name, unit: unit, pairs: pairs, efficiency: efficiency, losses: losses, datagramSize: datagramSize, error: baselineError)
            if !mixes.isEmpty { reportMixes(name, mixes) }
        }
        // The shared loops (and usrsctp's iterator thread) keep running; the figures are out.
        FileHandle.standardOutput.synchronizeFile()
        Glibc.exit(0)
    }

    /// Whether the two sides are bound to their own cores (asked for, and there are two).
    private var pinned: Bool { pin && ProcessInfo.processInfo.activeProcessorCount >= 2 }

    /// One side's figure in one round: MB/s or handshakes/s, MB per CPU-second for bulk tcp / tls-tcp.
    private struct Measurement {
        var value = 0.0
        var perCPU: Double?
        var error: Int32 = 0
        /// udp / dtls-udp: the share of datagrams sent that never arrived, and their size.
        var loss: Double?
        var datagramSize: Int?

        init(value: Double = 0, perCPU: Double? = nil, error: Int32 = 0) {
            self.value = value
            self.perCPU = perCPU
            self.error = error
        }

        init(_ datagrams: DatagramBench.Outcome) {
            value = datagrams.megabytesPerSecond
            loss = datagrams.loss
            datagramSize = datagrams.size
        }
    }

    private func measureTaps(_ bench: Bench) async throws -> Measurement {
        if bench.stack.hasSuffix("udp") { return Measurement(try await DatagramBench.taps(bench, seconds: seconds)) }
        if bench.stack == "sctp" {
            return Measurement(value: try await SCTPBench(mtu: mtu, streams: streams).throughput(seconds: seconds, messageSize: messageBytes))
        }
        if bench.stack == "dtls-chunk-sctp" && handshakes {
            return Measurement(value: try await AssociationSetupBench.rate(km, resume: resume, seconds: seconds, cert: bench.cert, key: bench.key,
                                                                          chunkKeys: bench.chunkKeys ?? ""))
        }
        if bench.stack == "dtls-chunk-sctp" {
            let setup = DTLSChunkSetup(keyManagement: km, keyFile: bench.chunkKeys ?? "", cert: bench.cert, key: bench.key,
                                       rekeyBytes: rekeyMb > 0 ? rekeyMb << 20 : nil)
            let chunk = SCTPBench(mtu: mtu, streams: streams, chunk: setup)
            return Measurement(value: try await chunk.throughput(seconds: seconds, messageSize: messageBytes))
        }
        if bench.stack == "tls-sctp" {
            if handshakes {
                return Measurement(value: try await StreamSetupBench.rate(pattern: .resumeFirst, seconds: seconds, cert: bench.cert, key: bench.key, mtu: mtu,
                                                                            tls12: tls12))
            }
            let tls = SCTPBench(mtu: mtu, tls: (bench.cert, bench.key), streams: streams)
            return Measurement(value: try await tls.throughput(seconds: seconds, messageSize: messageBytes))
        }
        if handshakes { return Measurement(value: try await bench.handshakeRate(seconds: seconds)) }
        let cpu = CPUTime.now()
        let transfer = try await bench.throughput(seconds: seconds, messageSize: messageBytes)
        return Measurement(value: transfer.megabytesPerSecond, perCPU: CPUTime.megabytesPerSecond(transfer.bytes, since: cpu))
    }

    /// The baseline: the C programs for tcp, tls-tcp and sctp; for tls-sctp and dtls-chunk-sctp, Taps'
    /// plain sctp in the same set-up (bulk), or full handshakes on every stream (`parallel`, for
    /// tls-sctp stream set-ups).
    private func measureBaseline(_ bench: Bench, datagramSize: Int?) async throws -> Measurement {
        let tls: Int32 = bench.tls ? 1 : 0, cert = bench.cert, key = bench.key
        if bench.stack == "udp" { return Measurement(DatagramBench.baseline(seconds: seconds, size: datagramSize ?? 65_507)) }
        if bench.stack == "dtls-udp" {
            var udp = bench
            udp.stack = "udp"
            return Measurement(try await DatagramBench.taps(udp, seconds: seconds, size: datagramSize))
        }
        if bench.stack == "sctp" { return Measurement(value: try SCTPBench.baseline(seconds: seconds, messageSize: messageBytes, mtu: mtu)) }
        if bench.stack == "dtls-chunk-sctp" && handshakes {
            return Measurement(value: try await AssociationSetupBench.rate(.tlsSCTP, seconds: seconds, cert: bench.cert, key: bench.key,
                                                                          chunkKeys: bench.chunkKeys ?? ""))
        }
        if bench.stack == "dtls-chunk-sctp" {
            return Measurement(value: try await SCTPBench(mtu: mtu, streams: streams).throughput(seconds: seconds, messageSize: messageBytes))
        }
        if bench.stack == "tls-sctp" {
            if handshakes {
                return Measurement(value: try await StreamSetupBench.rate(pattern: .parallel, seconds: seconds, cert: cert, key: key, mtu: mtu, tls12: tls12))
            }
            return Measurement(value: try await SCTPBench(mtu: mtu, streams: streams).throughput(seconds: seconds, messageSize: messageBytes))
        }
        if handshakes {
            let result = taps_baseline_handshakes(tls, seconds, cert, key)
            return Measurement(value: result.handshakes_per_second, error: result.error)
        }
        let cpu = CPUTime.now()
        let result = taps_baseline_bulk(tls, seconds, messageBytes, cert, key)
        return Measurement(value: result.megabytes_per_second, perCPU: CPUTime.megabytesPerSecond(Int(result.bytes), since: cpu), error: result.error)
    }

    private func report(_ stack: String, unit: String, pairs: [(ours: Double, baseline: Double)],
                        efficiency: [(ours: Double, baseline: Double)], losses: [(ours: Double, baseline: Double)],
                        datagramSize: Int?, error: Int32) {
        let loss = Self.median(losses.map(\.ours)), baselineLoss = Self.median(losses.map(\.baseline))
        let ours = Self.median(pairs.map(\.ours)), baseline = Self.median(pairs.map(\.baseline))
        let ratio = baseline > 0 ? ours / baseline : 0
        let oursPerCPU = Self.median(efficiency.map(\.ours)), baselinePerCPU = Self.median(efficiency.map(\.baseline))
        let cpuRatio = baselinePerCPU > 0 ? oursPerCPU / baselinePerCPU : 0
        if json {
            let baselineKey = unit == "mbps" ? "baseline_mbps" : "baseline_\(unit)"
            var fields = ["\"stack\": \"\(stack)\"", "\"\(unit)\": \(Self.format(ours))", "\"\(baselineKey)\": \(Self.format(baseline))",
                          "\"ratio\": \(String(format: "%.3f", ratio))", "\"message_size\": \(datagramSize ?? messageBytes)", "\"seconds\": \(seconds)"]
            if stack.hasSuffix("sctp") { fields += ["\"mtu\": \(mtu)", "\"streams\": \(streams)"] } else { fields.append("\"pinned\": \(pinned)") }
            if stack == "tls-sctp" { fields.append("\"baseline\": \"\(handshakes ? "parallel" : "sctp")\"") }
            if stack == "dtls-udp" { fields.append("\"baseline\": \"udp\"") }
            if !losses.isEmpty { fields += ["\"loss\": \(String(format: "%.4f", loss))", "\"baseline_loss\": \(String(format: "%.4f", baselineLoss))"] }
            if stack == "dtls-chunk-sctp" { fields.append("\"baseline\": \"\(handshakes ? "tls-sctp" : "sctp")\"") }
            if stack == "dtls-chunk-sctp" { fields.append("\"km\": \"\(km.rawValue)\"") }
            if stack == "dtls-chunk-sctp" && handshakes && resume { fields.append("\"resume\": true") }
            if stack == "tls-sctp" && handshakes { fields.append("\"tls_version\": \"\(tls12 ? "1.2" : "1.3")\"") }
            if !efficiency.isEmpty {
                fields += ["\"mb_per_cpu_second\": \(Self.format(oursPerCPU))", "\"baseline_mb_per_cpu_second\": \(Self.format(baselinePerCPU))",
                           "\"cpu_ratio\": \(String(format: "%.3f", cpuRatio))"]
            }
            if pairs.count > 1 {
                fields.append("\"rounds\": [\(pairs.map { "[\(Self.format($0.ours)), \(Self.format($0.baseline))]" }.joined(separator: ", "))]")
            }
            if error != 0 { fields.append("\"baseline_error\": \(error)") }
            print("{\(fields.joined(separator: ", "))}")
        } else {
            let label = unit == "mbps" ? "MB/s" : "handshakes/s"
            let median = pairs.count > 1 ? " (median of \(pairs.count))" : ""
            let baselineName = stack == "dtls-udp" ? "udp" : !["tls-sctp", "dtls-chunk-sctp"].contains(stack) ? "C baseline"
                : handshakes ? (stack == "tls-sctp" ? "parallel" : "tls-sctp") : "sctp"
            print("\(stack.padding(toLength: 8, withPad: " ", startingAt: 0)) taps \(String(format: "%9.1f", ours)) \(label)   \(baselineName) \(String(format: "%9.1f", baseline)) \(label)   ratio \(String(format: "%.2f", ratio))\(median)")
            if !losses.isEmpty {
                print("         \(datagramSize ?? 0)-byte datagrams, lost: taps \(String(format: "%.2f", loss * 100))%   \(baselineName) \(String(format: "%.2f", baselineLoss * 100))%")
            }
            if !efficiency.isEmpty {
                print("         taps \(String(format: "%9.1f", oursPerCPU)) MB/CPU-s C baseline \(String(format: "%9.1f", baselinePerCPU)) MB/CPU-s ratio \(String(format: "%.2f", cpuRatio))")
            }
        }
    }

    private func reportMixes(_ stack: String, _ mixes: [(tapsSending: Double, tapsReceiving: Double)]) {
        let sending = Self.median(mixes.map(\.tapsSending)), receiving = Self.median(mixes.map(\.tapsReceiving))
        if json {
            let rounds = mixes.map { "[\(Self.format($0.tapsSending)), \(Self.format($0.tapsReceiving))]" }.joined(separator: ", ")
            print("{\"stack\": \"\(stack)\", \"mixed\": true, \"taps_client_to_c_server_mbps\": \(Self.format(sending)), \"c_client_to_taps_server_mbps\": \(Self.format(receiving)), \"rounds\": [\(rounds)]}")
        } else {
            print("         taps client -> C server \(String(format: "%9.1f", sending)) MB/s   C client -> taps server \(String(format: "%9.1f", receiving)) MB/s")
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    private static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// The Taps side of one measurement: a listener on one loop, a client on another.
struct Bench {
    var stack: String
    let cert: String
    let key: String
    let serverLoop: EventLoop
    let clientLoop: EventLoop
    /// dtls-chunk-sctp's key file.
    var chunkKeys: String? = nil

    var tls: Bool { stack == "tls-tcp" }
    /// TLS or DTLS: the bench's certificate on the server, trusted by the client.
    private var secured: Bool { tls || stack == "dtls-udp" }
    private var transport: TransportProperties { stack.hasSuffix("udp") ? .unreliableDatagram : .reliableInOrderStream }

    private var registry: StackRegistry {
        StackRegistry(stacks: StackRegistry.standard.stacks.filter { $0.name == stack })
    }

    func serverPreconnection() -> Preconnection {
        let security: SecurityParameters = secured
            ? .server(identity: .pemFiles(certificate: cert, key: key)) : .disabled
        var preconnection = Preconnection(local: .loopback(), transport: transport, security: security, loop: serverLoop)
        preconnection.registry = registry
        return preconnection
    }

    func clientPreconnection(port: UInt16) -> Preconnection {
        var security = SecurityParameters.disabled
        if secured {
            security = .clientDefault
            security.trustedRoots = .pem(file: cert)
        }
        var properties = transport
        properties.isolateSession = true  // full handshakes, as in the baseline
        var preconnection = Preconnection(remote: .loopback(port: port), transport: properties, security: security, loop: clientLoop)
        preconnection.registry = registry
        return preconnection
    }

    /// MB/s (10^6 bytes) as the server received them, between its first and last byte, and the bytes.
    func throughput(seconds: Double, messageSize: Int) async throws -> (megabytesPerSecond: Double, bytes: Int) {
        let listener = try await serverPreconnection().listen()
        async let received = BulkTransfer.receive(on: listener)
        let client = clientPreconnection(port: listener.localAddress.port)
        try await BulkTransfer.send(client, seconds: seconds, messageSize: messageSize)
        let (bytes, elapsed) = await received
        await listener.stop()
        return (BulkTransfer.megabytesPerSecond(bytes, elapsed), bytes)
    }

    /// Taps sending to the C baseline's server: MB/s as that server received them.
    func throughputToBaselineServer(seconds: Double, messageSize: Int) async throws -> Double {
        var port: Int32 = 0
        guard let server = taps_baseline_server_start(tls ? 1 : 0, cert, key, &port) else { return 0 }
        try await BulkTransfer.send(clientPreconnection(port: UInt16(port)), seconds: seconds, messageSize: messageSize)
        return taps_baseline_server_finish(server).megabytes_per_second
    }

    /// The C baseline's client sending to a Taps listener: MB/s as Taps received them.
    func throughputFromBaselineClient(seconds: Double, messageSize: Int) async throws -> Double {
        let listener = try await serverPreconnection().listen()
        async let received = BulkTransfer.receive(on: listener)
        // Blocks this thread for `seconds`, as the baseline's own runs do; the Taps loops have theirs.
        let error = taps_baseline_send(tls ? 1 : 0, Int32(listener.localAddress.port), seconds, messageSize, cert)
        let (bytes, elapsed) = await received
        await listener.stop()
        if error != 0 { throw ValidationError("the C client failed (\(error))") }
        return BulkTransfer.megabytesPerSecond(bytes, elapsed)
    }

    /// Sequential establishments (TCP connect, plus the TLS handshake) per second.
    func handshakeRate(seconds: Double) async throws -> Double {
        let listener = try await serverPreconnection().listen()
        let serverLoop = self.serverLoop
        let server = Task(executorPreference: serverLoop) {
            for await connection in listener.connections {
                Task(executorPreference: serverLoop) {
                    while let message = try? await connection.receive(), !message.isFinal {}
                    await connection.abort()
                }
            }
        }
        let client = clientPreconnection(port: listener.localAddress.port)
        let count = try await Task(executorPreference: clientLoop) { () -> Int in
            var count = 0
            let deadline = ContinuousClock.now + .seconds(seconds)
            while ContinuousClock.now < deadline {
                let connection = try await client.initiate()
                await connection.abort()
                count += 1
            }
            return count
        }.value
        await listener.stop()
        server.cancel()
        return Double(count) / seconds
    }
}
