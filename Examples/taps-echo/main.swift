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
        subcommands: [Listen.self, Connect.self])
}

struct StackOptions: ParsableArguments {
    @Option(name: .long, help: "Stack: tcp, udp, tls-tcp, dtls-udp (default: chosen by selection, tls-tcp with security).")
    var stack: String?

    /// The registry limited to the named stack, and whether that stack is secured.
    func registry() throws -> (StackRegistry, secured: Bool) {
        guard let stack else { return (.standard, true) }
        guard let found = StackRegistry.standard.stack(named: stack) else {
            let names = StackRegistry.standard.stacks.map(\.name).joined(separator: ", ")
            throw ValidationError("unknown stack \(stack); available: \(names)")
        }
        return (StackRegistry(stacks: [found]), found.security != nil)
    }

    @Option(name: .long, help: "Export keying material after establishment and print it: LABEL:LENGTH (RFC 5705).")
    var export: String?

    /// Prints `export: HEX` for the connection when --export was given.
    func printExport(_ connection: Connection) async throws {
        guard let export else { return }
        guard let colon = export.lastIndex(of: ":"), let length = Int(export[export.index(after: colon)...]) else {
            throw ValidationError("--export takes LABEL:LENGTH, e.g. EXPORTER-test:32")
        }
        let bytes = try await connection.exportKeyingMaterial(label: String(export[..<colon]), length: length)
        say("export: " + bytes.map { String(format: "%02x", $0) }.joined())
    }

    func properties() -> TransportProperties {
        guard let stack, let found = StackRegistry.standard.stack(named: stack) else { return .reliableInOrderStream }
        return found.isByteStream ? .reliableInOrderStream : .unreliableDatagram
    }
}

struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Echo every message of every connection.")

    @Option(name: .long, help: "Port to listen on (0: any; the chosen one is printed).")
    var port: UInt16 = 0

    @Option(name: .long, help: "Local address.")
    var host = "127.0.0.1"

    @OptionGroup var stackOptions: StackOptions

    @Option(name: .long, help: "Certificate chain (PEM) for secured stacks.")
    var cert: String?

    @Option(name: .long, help: "Private key (PEM) for secured stacks.")
    var key: String?

    @Option(name: .long, help: "Exit after this many connections have ended.")
    var count: Int?

    mutating func run() async throws {
        let (registry, secured) = try stackOptions.registry()
        var security = SecurityParameters.disabled
        if secured {
            guard let cert, let key else { throw ValidationError("a secured stack needs --cert and --key (or --stack tcp / udp)") }
            security = .server(identity: .pemFiles(certificate: cert, key: key))
        }
        var preconnection = Preconnection(local: .host(host, port: port), transport: stackOptions.properties(), security: security)
        preconnection.registry = registry
        let listener = try await preconnection.listen()
        say("stack: \(listener.stack.name)")
        say("listening on \(listener.localAddress)")
        let limit = count
        let options = stackOptions
        await withTaskGroup(of: Void.self) { group in
            var served = 0
            for await connection in listener.connections {
                group.addTask {
                    do {
                        try await options.printExport(connection)
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

    @Option(name: .long, help: "Trusted root certificates (PEM); default: the system's.")
    var ca: String?

    @Option(name: .long, help: "Name to send in SNI and check the certificate against.")
    var serverName: String?

    @Option(name: .long, help: "The message to send; a newline is added on byte streams.")
    var message: String

    @Option(name: .long, help: "Seconds to wait for the reply.")
    var timeout: Double = 10

    mutating func run() async throws {
        let (registry, secured) = try stackOptions.registry()
        var security = SecurityParameters.disabled
        if secured {
            security = .clientDefault
            if let ca { security.trustedRoots = .pem(file: ca) }
            security.serverName = serverName
        }
        var preconnection = Preconnection(remote: .host(host, port: port), transport: stackOptions.properties(), security: security)
        preconnection.registry = registry
        let connection = try await preconnection.initiate(timeout: .seconds(timeout))
        say("stack: \(connection.stack.name)")
        if let details = await connection.securityDetails {
            say("tls-version: \(details.protocolVersion)")
            say("cipher: \(details.cipherSuite)")
            say("alpn: \(details.applicationProtocol ?? "none")")
            say("resumed: \(details.resumed ? "yes" : "no")")
        }
        try await stackOptions.printExport(connection)
        let byteStream = connection.stack.isByteStream
        try await connection.send(message + (byteStream ? "\n" : ""))
        let reply = try await Self.readReply(connection, byteStream: byteStream)
        say(reply)
        await connection.close()
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

/// Writes a line to standard output at once (unbuffered), so scripts reading a pipe see it.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
