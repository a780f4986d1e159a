import Foundation
import Synchronization
import XCTest
@testable import Taps

/// Key logs that tshark decrypts real captures with: tls-tcp and dtls-udp captured on loopback,
/// each end's key log alone enough; DTLS 1.3 key management's secrets and the DTLS chunk's own key
/// lines, which open the protected packets of the association they came from.
final class KeyLogTests: XCTestCase {
    static let pki = TestPKI.shared

    /// dumpcap (tshark's capture engine, run directly so a signal reaches the process that writes
    /// the file) capturing `filter` on the loopback interface until `stop()`.
    struct Capture {
        let process: ChildProcess
        let file: String

        static func start(_ filter: String) async throws -> Capture {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("taps-capture-\(UUID().uuidString).pcapng").path
            let process = try ChildProcess("/usr/bin/dumpcap", ["-i", "lo", "-f", filter, "-w", file])
            let started = await process.waitFor("File: ")
            XCTAssertTrue(started, "dumpcap did not start capturing: \(process.text)")
            return Capture(process: process, file: file)
        }

        /// Stops the capture once the last packets are written.
        func stop() async {
            try? await Task.sleep(for: .milliseconds(300))
            process.send(signal: SIGTERM)
            await process.finish(timeout: 10)
        }

        /// tshark's reading of the capture with these options.
        func read(_ options: [String]) async throws -> String {
            let reader = try ChildProcess("/usr/bin/tshark", ["-r", file] + options)
            await reader.finish(timeout: 30)
            return reader.text
        }
    }

    static func temporaryFile(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("taps-\(name)-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        return path
    }

    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testTLSOverTCPCaptureDecryptsWithEitherEndsKeyLog() async throws {
        let serverLog = Self.temporaryFile("server-keys"), clientLog = Self.temporaryFile("client-keys")
        var serverSecurity = Self.pki.serverSecurity
        serverSecurity.keyLog = .file(serverLog)
        var clientSecurity = Self.pki.clientSecurity
        clientSecurity.keyLog = .file(clientLog)
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: serverSecurity).listen()
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        let capture = try await Capture.start("tcp port \(port)")
        let connection = try await Preconnection(remote: .host("localhost", port: port), transport: .reliableInOrderStream,
                                                 security: clientSecurity).initiate()
        let marker = "tls key log marker 7f3a"
        try await connection.send(marker)
        _ = try await receiveBytes(connection, count: marker.utf8.count)
        await connection.close()
        await capture.stop()
        await listener.stop()
        echo.cancel()

        for log in [clientLog, serverLog] {
            let lines = try Self.lines(log)
            XCTAssertTrue(lines.contains { $0.hasPrefix("CLIENT_TRAFFIC_SECRET_0 ") }, "TLS 1.3 secrets in NSS format: \(lines)")
            let decrypted = try await capture.read(["-o", "tls.keylog_file:\(log)", "-q", "-z", "follow,tls,ascii,0"])
            XCTAssertTrue(decrypted.contains(marker), "tshark decrypted the capture with \(log): \(decrypted)")
        }
        let withoutKeys = try await capture.read(["-q", "-z", "follow,tls,ascii,0"])
        XCTAssertFalse(withoutKeys.contains(marker), "the capture alone shows nothing")
    }

    func testDTLSOverUDPCaptureDecryptsWithTheClientsKeyLog() async throws {
        let clientLog = Self.temporaryFile("dtls-keys")
        var clientSecurity = Self.pki.clientSecurity
        clientSecurity.keyLog = .file(clientLog)
        let listener = try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: Self.pki.serverSecurity).listen()
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        let capture = try await Capture.start("udp port \(port)")
        let connection = try await Preconnection(remote: .host("localhost", port: port), transport: .unreliableDatagram,
                                                 security: clientSecurity).initiate()
        let marker = "dtls key log marker 91c2"
        try await connection.send(marker)
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, marker)
        await connection.close()
        await capture.stop()
        await listener.stop()
        echo.cancel()

        let lines = try Self.lines(clientLog)
        XCTAssertTrue(lines.contains { $0.hasPrefix("CLIENT_RANDOM ") }, "DTLS 1.2's master secret: \(lines)")
        let markerHex = Hex.encode(Array(marker.utf8))
        let decrypted = try await capture.read(["-o", "tls.keylog_file:\(clientLog)", "-d", "udp.port==\(port),dtls", "-x"])
        XCTAssertTrue(decrypted.contains("Decrypted DTLS"), decrypted)
        XCTAssertTrue(Self.hexDump(decrypted).contains(markerHex), "the decrypted record holds the message")
        let withoutKeys = try await capture.read(["-d", "udp.port==\(port),dtls", "-x"])
        XCTAssertFalse(Self.hexDump(withoutKeys).contains(markerHex))
    }

    /// The hex bytes of tshark's `-x` dump, run together: "0010  de ad ..." lines.
    static func hexDump(_ text: String) -> String {
        text.split(separator: "\n").map { line -> String in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 1, fields[0].count == 4, fields[0].allSatisfy(\.isHexDigit) else { return "" }
            return fields.dropFirst().prefix { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }.joined()
        }.joined()
    }

    /// dtls-chunk-sctp with DTLS 1.3 key management: both BoringSSL's secrets (NSS lines) and our
    /// SCTP_DTLS_CHUNK_KEY lines are logged, and the logged chunk keys open a protected packet
    /// captured from that association.
    func testDTLSChunkKeyLinesOpenTheAssociationsPackets() async throws {
        let log = Self.temporaryFile("chunk-keys")
        var clientSecurity = DTLSChunkDTLS13Tests.security(server: false)
        clientSecurity.keyLog = .file(log)
        let listener = try await DTLSChunkDTLS13Tests.listener()
        let echo = startEcho(listener)
        let captured = Mutex<[[UInt8]]>([])
        var client = DTLSChunkDTLS13Tests.client(listener.localAddress.port, clientSecurity)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            if outgoing, datagram.count > 12, datagram[12] == DTLSChunkProtection.chunkType { captured.withLock { $0.append(datagram) } }
            return [datagram]
        }
        client.lossyPath = lossy
        let connection = try await client.initiate(timeout: .seconds(10))
        let marker = Array("chunk key log marker".utf8)
        try await connection.send(marker)
        let reply = try await connection.receive()
        XCTAssertEqual(reply.content, marker)
        await connection.close()
        await listener.stop()
        echo.cancel()

        let lines = try Self.lines(log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("CLIENT_TRAFFIC_SECRET_0 ") }, "BoringSSL's DTLS 1.3 secrets: \(lines)")
        let chunkLines = lines.filter { $0.hasPrefix(DTLSChunkKeyLog.label + " ") }.map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(chunkLines.count, 4, "primary and restart, each direction: \(chunkLines)")
        let fromUs = try XCTUnwrap(chunkLines.first { $0[3] == "primary" && $0[5] == "initiator" })
        XCTAssertEqual(fromUs[4], "3")
        let suite = try XCTUnwrap(DTLSChunkCipherSuite(name: fromUs[6]))
        let keys = DTLSChunkKeyMaterial(key: try XCTUnwrap(Hex.decode(fromUs[7])), iv: try XCTUnwrap(Hex.decode(fromUs[8])),
                                        sequenceNumberKey: try XCTUnwrap(Hex.decode(fromUs[9])))
        var reader = DTLSChunkProtection()
        try reader.establishReceiveKeys(keys, suite: suite, for: DTLSKeyContextID(epoch: 3))
        let packets = captured.withLock { $0 }
        XCTAssertFalse(packets.isEmpty)
        var opened = 0
        for packet in packets {
            // The tags in the line are those of the packets' common headers (the responder's, as it receives them).
            XCTAssertEqual(Hex.encode(packet[4..<8]), fromUs[2])
            var output = [UInt8](repeating: 0, count: packet.count)
            let verdict = packet.withUnsafeBytes { bytes in output.withUnsafeMutableBytes { reader.unprotect(bytes, into: $0) } }
            if case .unprotected = verdict { opened += 1 }
        }
        XCTAssertEqual(opened, packets.count, "every protected packet the client sent opens with the logged keys")
    }

    /// Pre-shared parameters (KMId 0) are logged too: one line per installed direction of the
    /// primary and restart contexts, holding exactly the configured keys; the closure form receives them.
    func testPreSharedChunkKeysAreLoggedAsConfigured() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let logged = Mutex<[String]>([])
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let echo = startEcho(listener)
        var client = DTLSChunkSCTPTests.client(listener.localAddress.port, keys: keys)
        client.security.keyLog = KeyLog { line in logged.withLock { $0.append(line) } }
        let connection = try await client.initiate(timeout: .seconds(10))
        try await connection.send("psk")
        _ = try await connection.receive()
        await connection.close()
        await listener.stop()
        echo.cancel()

        let lines = logged.withLock { $0 }.map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(lines.count, 4, "\(lines)")
        XCTAssertTrue(lines.allSatisfy { $0.count == 10 && $0[0] == DTLSChunkKeyLog.label && $0[6] == keys.cipherSuite.description })
        let restart = try XCTUnwrap(keys.restart)
        let configured: Set<[String]> = Set([keys.clientToServer, keys.serverToClient, restart.clientToServer, restart.serverToClient]
            .map { [Hex.encode($0.key), Hex.encode($0.iv), Hex.encode($0.sequenceNumberKey)] })
        XCTAssertEqual(Set(lines.map { Array($0[7...9]) }), configured)
        XCTAssertEqual(Set(lines.map { $0[3] }), ["primary", "restart"])
        XCTAssertEqual(Set(lines.map { $0[5] }), ["initiator", "responder"])
    }

    /// `SSLKEYLOGFILE` makes an unchanged application log its keys, both ends.
    func testSSLKEYLOGFILELogsWhenTheParametersSayNothing() async throws {
        let log = Self.temporaryFile("environment-keys")
        setenv("SSLKEYLOGFILE", log, 1)
        defer { unsetenv("SSLKEYLOGFILE") }
        let listener = try await Preconnection(local: .loopback(), transport: .reliableInOrderStream, security: Self.pki.serverSecurity).listen()
        let echo = startEcho(listener)
        let connection = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: .reliableInOrderStream,
                                                 security: Self.pki.clientSecurity).initiate()
        try await connection.send("environment")
        _ = try await receiveBytes(connection, count: 11)
        await connection.close()
        await listener.stop()
        echo.cancel()

        let secrets = try Self.lines(log).filter { $0.hasPrefix("CLIENT_TRAFFIC_SECRET_0 ") }
        XCTAssertEqual(secrets.count, 2, "client and server each logged the connection: \(secrets)")
        XCTAssertEqual(Set(secrets).count, 1, "both ends logged the same secret")
    }

    /// tls-sctp logs each stream's TLS connection (RFC 3436: one per stream), resumed ones included,
    /// and both ends log the same secrets.
    func testTLSOverSCTPLogsEveryStreamsConnection() async throws {
        let serverLines = Mutex<[String]>([]), clientLines = Mutex<[String]>([])
        var serverSecurity = TLSSCTP.pki.serverSecurity
        serverSecurity.keyLog = KeyLog { line in serverLines.withLock { $0.append(line) } }
        var clientSecurity = TLSSCTP.pki.clientSecurity
        clientSecurity.keyLog = KeyLog { line in clientLines.withLock { $0.append(line) } }
        let listener = try await TLSSCTP.listener(security: serverSecurity)
        let client = TLSSCTP.client(listener.localAddress.port, security: clientSecurity)
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: client, to: listener)
        XCTAssertEqual(servers.count, 2)
        // Both ends at once: a byte-stream close waits for the peer's end.
        await withTaskGroup { group in
            for connection in clients + Array(servers.values) { group.addTask { await connection.close() } }
        }
        await listener.stop()

        func secrets(_ lines: borrowing Mutex<[String]>) -> Set<String> {
            Set(lines.withLock { $0 }.filter { $0.hasPrefix("CLIENT_TRAFFIC_SECRET_0 ") })
        }
        XCTAssertEqual(secrets(clientLines).count, 2, "one TLS connection per stream")
        XCTAssertEqual(secrets(clientLines), secrets(serverLines))
    }
}
