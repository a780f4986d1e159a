import ArgumentParser
import Foundation
import Taps

/// Echo server and client over any stack. Byte-stream stacks (tcp, tls-tcp) carry raw bytes, so the
/// client interoperates with `openssl s_server` and the server with `openssl s_client`.
@main
struct TapsEcho: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taps-echo",
        abstract: "Echo messages over a Taps stack.",
        subcommands: [Listen.self, Connect.self, MakeChunkKeys.self])
}

/// Writes a key file of fresh pre-shared parameters for dtls-chunk-sctp (KMId 0), for both ends.
struct MakeChunkKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-chunk-keys",
        abstract: "Write a DTLS chunk key file (KMId 0) with fresh random keys.")

    @Argument(help: "The file to write (JSON, hex strings).")
    var file: String

    @Option(name: .long, help: "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256.")
    var cipherSuite = "TLS_AES_128_GCM_SHA256"

    @Flag(name: .long, help: "Leave out the restart key context.")
    var noRestart = false

    func run() throws {
        guard let suite = DTLSChunkCipherSuite(name: cipherSuite) else {
            throw ValidationError("unknown cipher suite \(cipherSuite)")
        }
        let keys = DTLSChunkPreSharedKeys.random(cipherSuite: suite, restart: !noRestart)
        guard FileManager.default.createFile(atPath: file, contents: Data(keys.json.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ValidationError("cannot write \(file)")
        }
    }
}

struct StackOptions: ParsableArguments {
    @Option(name: .long, help: "Stack: tcp, udp, tls-tcp, dtls-udp, sctp, tls-sctp, dtls-chunk-sctp (default: chosen by selection, tls-tcp with security).")
    var stack: String?

    @Option(name: .long, help: "tls-sctp: the streams' handshake pattern (RFC 3436 section 5): parallel, resumeFirst, delayed.")
    var handshakes: SCTPOptions.TLSHandshakes = .resumeFirst

    @Option(name: .long, help: "sctp: the peer's UDP encapsulation port (RFC 6951; default: the SCTP port).")
    var udpPort: UInt16?

    @Option(name: .long, help: "sctp: the local UDP encapsulation port (default: the SCTP port when listening, any when connecting).")
    var localUDPPort: UInt16?

    /// The registry limited to the named stack, and whether that stack is secured.
    func registry() throws -> (StackRegistry, secured: Bool) {
        guard let stack else { return (.standard, true) }
        guard let found = StackRegistry.standard.stack(named: stack) else {
            let names = StackRegistry.standard.stacks.map(\.name).joined(separator: ", ")
            throw ValidationError("unknown stack \(stack); available: \(names)")
        }
        return (StackRegistry(stacks: [found]), found.security != nil)
    }

    func properties() -> TransportProperties {
        guard let stack, let found = StackRegistry.standard.stack(named: stack) else { return .reliableInOrderStream }
        if found.features.contains(.multistreaming) {
            // tls-sctp is a byte stream on each stream; sctp keeps message boundaries.
            var properties = found.isByteStream ? TransportProperties.reliableInOrderStream : .reliableMessage
            properties.multistreaming = .require
            properties.sctp.remoteUDPPort = udpPort
            properties.sctp.localUDPPort = localUDPPort
            properties.sctp.tlsHandshakes = handshakes
            return properties
        }
        return found.isByteStream ? .reliableInOrderStream : .unreliableDatagram
    }
}

/// Security options both ends share: ALPN, a PSK, required interfaces, and what to print.
struct SecurityOptions: ParsableArguments {
    @Option(name: .long, help: "ALPN protocols to offer (client) or accept (server), comma-separated, in preference order.")
    var alpn: String?

    @Option(name: .long, help: "External PSK identity (with --psk-hex).")
    var pskIdentity: String?

    @Option(name: .long, help: "External PSK as hex, at least 16 bytes (with --psk-identity).")
    var pskHex: String?

    @Option(name: .long, help: "RFC 8922 interfaces the stack must expose, comma-separated: ipk,alg,ext,cm,pski,iv,sav,ct,ku,sske.")
    var require: String?

    @Option(name: .long, help: "Export keying material after establishment and print it: LABEL:LENGTH (RFC 5705).")
    var export: String?

    @Option(name: .long, help: "dtls-chunk-sctp: the pre-shared parameters (KMId 0), a key file as `make-chunk-keys` writes.")
    var chunkKeys: String?

    @Flag(name: .long, help: "dtls-chunk-sctp: let the --chunk-keys protect more than one association of this process. Every association starts at sequence number 0, so they repeat AEAD nonces: for tests only.")
    var reuseChunkKeys = false

    @Option(name: .long, help: "dtls-chunk-sctp: the key management to offer, dtls13 or tls13 (certificates both ways: --cert/--key/--ca, --client-cert/--client-key/--ca) or psk (--chunk-keys); default: every one configured, in that order.")
    var km: String?

    func apply(to security: inout SecurityParameters) throws {
        if let alpn { security.applicationProtocols = alpn.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        switch (pskIdentity, pskHex) {
        case (nil, nil): break
        case (let identity?, let hex?):
            guard let key = Hex.decode(hex) else { throw ValidationError("--psk-hex must be an even number of hex digits") }
            security.preSharedKey = PreSharedKey(identity: identity, key: key)
        default: throw ValidationError("--psk-identity and --psk-hex go together")
        }
        for name in (require ?? "").split(separator: ",") {
            guard let interface = SecurityInterface(shortName: String(name)) else {
                throw ValidationError("unknown interface \(name); known: \(SecurityInterface.all.map { $0.1.lowercased() }.joined(separator: ","))")
            }
            security.require(interface)
        }
        if let chunkKeys {
            var keys = try DTLSChunkPreSharedKeys(jsonFile: chunkKeys)
            keys.allowsReuseAcrossAssociations = reuseChunkKeys
            security.dtlsChunkKeys = keys
        }
        switch km {
        case nil: break
        case "dtls13": security.dtlsChunkKeyManagement = [.dtls13]
        case "tls13": security.dtlsChunkKeyManagement = [.tls13]
        case "psk": security.dtlsChunkKeyManagement = [.preSharedParameters]
        case let other?: throw ValidationError("--km takes dtls13, tls13 or psk, not \(other)")
        }
    }

    /// True when the options alone can authenticate (a PSK needs no certificate).
    var hasPreSharedKey: Bool { pskIdentity != nil || (chunkKeys != nil && km != "dtls13" && km != "tls13") }

    /// The lines a script compares: stack, negotiated security and, with --export, the export.
    func printEstablished(_ connection: Connection) async throws {
        say("stack: \(connection.stack.name)")
        if let details = await connection.securityDetails {
            say("tls-version: \(details.protocolVersion)")
            say("cipher: \(details.cipherSuite)")
            say("alpn: \(details.applicationProtocol ?? "none")")
            say("resumed: \(details.resumed ? "yes" : "no")")
        }
        if let chunk = await connection.dtlsChunkStatus, let agreement = chunk.agreement {
            let counters = chunk.counters
            say("km: \(agreement.method), \(agreement.role) role")
            say("epoch: \(chunk.sendKeyContext?.epoch.description ?? "none")")
            say("counters: \(counters.sentProtected) sent, \(counters.receivedProtected) received protected, \(counters.aeadFailures) failed authentication, \(counters.replaysDropped) replays")
        }
        guard let export else { return }
        guard let colon = export.lastIndex(of: ":"), let length = Int(export[export.index(after: colon)...]) else {
            throw ValidationError("--export takes LABEL:LENGTH, e.g. EXPORTER-test:32")
        }
        let bytes = try await connection.exportKeyingMaterial(label: String(export[..<colon]), length: length)
        say("export: " + bytes.map { String(format: "%02x", $0) }.joined())
    }
}

struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Echo every message of every connection.")

    @Option(name: .long, help: "Port to listen on (0: any; the chosen one is printed).")
    var port: UInt16 = 0

    @Option(name: .long, help: "Local address.")
    var host = "127.0.0.1"

    @OptionGroup var stackOptions: StackOptions

    @OptionGroup var securityOptions: SecurityOptions

    @Option(name: .long, help: "Certificate chain (PEM or DER) for secured stacks.")
    var cert: String?

    @Option(name: .long, help: "Private key (PEM or DER) for secured stacks.")
    var key: String?

    @Option(name: .long, help: "Require client certificates issued by these roots (PEM).")
    var ca: String?

    @Option(name: .long, help: "Exit after this many connections have ended.")
    var count: Int?

    mutating func run() async throws {
        let (registry, secured) = try stackOptions.registry()
        var security = SecurityParameters.disabled
        if secured {
            security = SecurityParameters()
            if let cert, let key {
                security.localIdentity = .files(certificate: cert, key: key)
            } else if !securityOptions.hasPreSharedKey {
                throw ValidationError("a secured stack needs --cert and --key or a PSK (or --stack tcp / udp)")
            }
            if let ca {
                security.trustedRoots = .pem(file: ca)
                security.requireClientCertificate = true
            }
            try securityOptions.apply(to: &security)
        }
        var preconnection = Preconnection(local: .host(host, port: port), transport: stackOptions.properties(), security: security)
        preconnection.registry = registry
        let listener = try await preconnection.listen()
        say("stack: \(listener.stack.name)")
        say("listening on \(listener.localAddress)")
        let limit = count
        let options = securityOptions
        await withTaskGroup(of: Void.self) { group in
            var served = 0
            for await connection in listener.connections {
                group.addTask {
                    do {
                        try await options.printEstablished(connection)
                    } catch {
                        FileHandle.standardError.write(Data("export failed: \(error)\n".utf8))
                    }
                    await Self.echo(connection)
                }
                served += 1
                if let limit, served >= limit { break }
            }
            await group.waitForAll()
        }
        await listener.stop()
    }

    static func echo(_ connection: Connection) async {
        do {
            for try await message in connection.messages {
                if message.content.isEmpty && message.isFinal { break }
                try await connection.send(message.content)
            }
            await connection.close()
        } catch {
            FileHandle.standardError.write("connection ended: \(error)\n".data(using: .utf8)!)
            await connection.abort()
        }
    }
}

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send one message and print the reply.")

    @Argument(help: "Host name or address.")
    var host: String

    @Argument(help: "Port.")
    var port: UInt16

    @OptionGroup var stackOptions: StackOptions

    @OptionGroup var securityOptions: SecurityOptions

    @Option(name: .long, help: "Trusted root certificates (PEM); default: the system's.")
    var ca: String?

    @Option(name: .long, help: "Client certificate chain (PEM or DER), for servers that ask for one.")
    var clientCert: String?

    @Option(name: .long, help: "Client private key (PEM or DER).")
    var clientKey: String?

    @Option(name: .long, help: "Name to send in SNI and check the certificate against.")
    var serverName: String?

    @Option(name: .long, help: "The message to send; a newline is added on byte streams.")
    var message: String

    @Option(name: .long, help: "Seconds to wait for the reply.")
    var timeout: Double = 10

    @Option(name: .long, help: "sctp, tls-sctp: send the message on this many streams of one association (clones of the first connection).")
    var streams: Int = 1

    mutating func run() async throws {
        let (registry, secured) = try stackOptions.registry()
        var security = SecurityParameters.disabled
        if secured {
            security = .clientDefault
            if let ca { security.trustedRoots = .pem(file: ca) }
            security.serverName = serverName
            switch (clientCert, clientKey) {
            case (nil, nil): break
            case (let cert?, let key?): security.localIdentity = .files(certificate: cert, key: key)
            default: throw ValidationError("--client-cert and --client-key go together")
            }
            try securityOptions.apply(to: &security)
        }
        var preconnection = Preconnection(remote: .host(host, port: port), transport: stackOptions.properties(), security: security)
        preconnection.registry = registry
        let connection = try await preconnection.initiate(timeout: .seconds(timeout))
        try await securityOptions.printEstablished(connection)
        let byteStream = connection.stack.isByteStream
        guard streams > 1 else {
            try await connection.send(message + (byteStream ? "\n" : ""))
            let reply = try await Self.readReply(connection, byteStream: byteStream)
            say(reply)
            await connection.close()
            return
        }
        var connections = [connection]
        for _ in 1..<streams { connections.append(try await connection.clone()) }
        for (index, stream) in connections.enumerated() {
            try await stream.send("\(message) (stream \(index))" + (byteStream ? "\n" : ""))
            let reply = try await Self.readReply(stream, byteStream: byteStream)
            // After the reply: on a delayed stream the handshake runs when it first sends.
            say("stream \(index): " + (await Self.securityLine(stream)) + "reply: \(reply)")
        }
        for stream in connections.reversed() { await stream.close() }
    }

    /// One stream's negotiated TLS: version, cipher and whether it resumed.
    static func securityLine(_ connection: Connection) async -> String {
        guard let details = await connection.securityDetails else { return "no security, " }
        return "\(details.protocolVersion), \(details.cipherSuite), resumed: \(details.resumed ? "yes" : "no"), "
    }

    /// A byte stream's reply is everything up to the first newline; a datagram stack's is one message.
    static func readReply(_ connection: Connection, byteStream: Bool) async throws -> String {
        guard byteStream else { return try await connection.receive().text }
        var bytes: [UInt8] = []
        while !bytes.contains(UInt8(ascii: "\n")) {
            let part = try await connection.receive()
            if part.content.isEmpty && part.isFinal { break }
            bytes += part.content
        }
        let line = bytes.prefix { $0 != UInt8(ascii: "\n") }
        return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .init(charactersIn: "\r"))
    }
}

extension SCTPOptions.TLSHandshakes: ExpressibleByArgument {}

/// Writes a line to standard output at once (unbuffered), so scripts reading a pipe see it.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
