import Foundation
import XCTest
@testable import Taps

/// `TransportProperties.capture`: pcap files of an SCTP stack's packets that tshark reads as is,
/// checksums and all; for dtls-chunk-sctp a second file with the plain packets; rotation; the
/// environment variable.
final class CaptureTests: XCTestCase {
    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("taps-\(name)-\(UUID().uuidString).pcap").path
    }

    /// tshark's fields of every packet of `file`, SCTP decoded on `port`, one array per packet.
    static func fields(_ file: String, port: UInt16, _ names: [String], filter: String? = nil) async throws -> [[String]] {
        let options = ["-r", file, "-d", "udp.port==\(port),sctp", "-o", "sctp.checksum:CRC-32C", "-o", "udp.check_checksum:TRUE",
                       "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
            + (filter.map { ["-Y", $0] } ?? []) + names.flatMap { ["-e", $0] }
        let reader = try ChildProcess("/usr/bin/tshark", options)
        let status = await reader.finish(timeout: 30)
        XCTAssertEqual(status, 0, reader.text)
        return reader.text.split(separator: "\n").filter { !$0.hasPrefix("Running as user") }
            .map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Echoes `count` messages of `marker` over a new association of `client` and closes it.
    static func exchange(_ client: Preconnection, marker: String, count: Int = 10) async throws {
        let connection = try await client.initiate(timeout: .seconds(10))
        for _ in 0..<count {
            try await connection.send(marker)
            let reply = try await connection.receive()
            XCTAssertEqual(reply.text, marker)
        }
        await connection.close()
        PacketCapture.flush()
    }

    func testSCTPCaptureReadsWithGoodChecksumsBothWays() async throws {
        for ip in ["127.0.0.1", "::1"] {
            let path = Self.temporaryPath("sctp")
            var server = Preconnection(local: try XCTUnwrap(.ip(ip, port: 0)), transport: DTLSChunkSCTPTests.transport(), security: .disabled)
            server.registry = StackRegistry(stacks: [.sctp])
            let listener = try await server.listen()
            let echo = startEcho(listener)
            let port = listener.localAddress.port
            var transport = DTLSChunkSCTPTests.transport()
            transport.capture = .pcap(path)
            var client = Preconnection(remote: try XCTUnwrap(.ip(ip, port: port)), transport: transport, security: .disabled)
            client.registry = StackRegistry(stacks: [.sctp])
            try await Self.exchange(client, marker: "captured sctp marker")
            await listener.stop()
            echo.cancel()

            let packets = try await Self.fields(path, port: port, ["ip.src", "ipv6.src", "udp.srcport", "udp.dstport", "udp.checksum.status",
                                                                    "sctp.checksum.status", "sctp.chunk_type"])
            XCTAssertGreaterThan(packets.count, 20, "INIT to SHUTDOWN COMPLETE and ten echoes: \(packets)")
            for packet in packets {
                XCTAssertEqual(packet.count, 7)
                XCTAssertEqual(packet[5], "1", "every CRC32c good: \(packet)")
                if ip == "::1" { XCTAssertEqual(packet[4], "1", "UDP checksum over IPv6 good: \(packet)") }
                XCTAssertEqual(ip == "::1" ? packet[1] : packet[0], ip)
            }
            XCTAssertEqual(Set(packets.map { $0[3] == "\(port)" }), [true, false], "both directions")
            let chunkTypes = Set(packets.flatMap { $0[6].split(separator: ",").map(String.init) })
            XCTAssertTrue(chunkTypes.isSuperset(of: ["1", "2", "10", "11", "0", "3", "7"]),
                          "INIT, INIT ACK, COOKIE ECHO, COOKIE ACK, DATA, SACK, SHUTDOWN: \(chunkTypes)")
            let payloads = try await Self.fields(path, port: port, ["data.data"], filter: "sctp.data_payload_proto_id")
            XCTAssertTrue(payloads.contains { $0[0].contains(Hex.encode(Array("captured sctp marker".utf8))) }, "\(payloads)")
        }
    }

    /// dtls-chunk-sctp: the wire file shows DTLS chunks only once the keys are in, the application's
    /// bytes nowhere; the plain file shows the same association's DATA chunks with them. Checksums
    /// are good in both.
    func testDTLSChunkCaptureHasTheProtectedAndThePlainPackets() async throws {
        let path = Self.temporaryPath("dtls-chunk")
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        let client = DTLSChunkSCTPTests.client(port, keys: keys, lossy: nil) { $0.capture = .pcap(path) }
        let marker = "captured chunk marker"
        try await Self.exchange(client, marker: marker)
        await listener.stop()
        echo.cancel()
        let capture = PacketCapture.pcap(path)
        XCTAssertTrue(capture.plainPath.hasSuffix(".plain.pcap"))

        let markerHex = Hex.encode(Array(marker.utf8))
        let wire = try await Self.fields(path, port: port, ["sctp.checksum.status", "sctp.chunk_type", "data"])
        let plain = try await Self.fields(capture.plainPath, port: port, ["sctp.checksum.status", "sctp.chunk_type", "data.data"])
        XCTAssertGreaterThan(wire.count, 20)
        XCTAssertEqual(wire.count, plain.count, "each packet in both files")
        for file in [wire, plain] { XCTAssertTrue(file.allSatisfy { $0[0] == "1" }, "every CRC32c good: \(file)") }
        let afterHandshake = wire.drop { $0[1] != "65" }
        XCTAssertGreaterThan(afterHandshake.count, 20, "DTLS chunks (0x41) once the keys are in")
        XCTAssertTrue(afterHandshake.allSatisfy { $0[1] == "65" }, "nothing in clear after the first DTLS chunk: \(wire)")
        XCTAssertFalse(wire.contains { $0[2].contains(markerHex) })
        XCTAssertTrue(plain.contains { $0[1].split(separator: ",").contains("0") && $0[2].contains(markerHex) },
                      "the plain file has the DATA chunks: \(plain)")
    }

    /// A file that reaches its size is rotated: `files` files, each a complete pcap, no more.
    func testCaptureRotatesAtItsSizeKeepingItsFiles() async throws {
        let path = Self.temporaryPath("rotated")
        let listener = try await DTLSChunkSCTPTests.listener(keys: nil, stacks: [.sctp])
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        let client = DTLSChunkSCTPTests.client(port, keys: nil, stacks: [.sctp], lossy: nil) {
            $0.capture = .pcap(path, maximumFileBytes: 4_096, files: 3)
        }
        try await Self.exchange(client, marker: String(repeating: "r", count: 300), count: 20)
        await listener.stop()
        echo.cancel()

        for file in [path, path + ".1", path + ".2"] {
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            XCTAssertLessThanOrEqual(size, 4_096)
            let packets = try await Self.fields(file, port: port, ["sctp.checksum.status"])
            XCTAssertFalse(packets.isEmpty, file)
            XCTAssertTrue(packets.allSatisfy { $0 == ["1"] }, "\(file): \(packets)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".3"))
    }

    /// `TAPS_PCAP` captures an application that sets nothing; a capture that cannot work is an
    /// `invalidArgument` before any packet.
    func testEnvironmentCapturesAndBadSettingsAreRefused() async throws {
        let path = Self.temporaryPath("environment-\(getpid())")
        setenv("TAPS_PCAP", path.replacingOccurrences(of: "-\(getpid())", with: "-%p"), 1)
        defer { unsetenv("TAPS_PCAP") }
        let listener = try await DTLSChunkSCTPTests.listener(keys: nil, stacks: [.sctp])
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        try await Self.exchange(DTLSChunkSCTPTests.client(port, keys: nil, stacks: [.sctp], lossy: nil), marker: "environment")
        let packets = try await Self.fields(path, port: port, ["sctp.checksum.status"])
        XCTAssertGreaterThan(packets.count, 10, "the listener and the client captured")

        let tooSmall = DTLSChunkSCTPTests.client(port, keys: nil, stacks: [.sctp], lossy: nil) { $0.capture = .pcap(path, maximumFileBytes: 100) }
        do {
            _ = try await tooSmall.initiate(timeout: .seconds(5))
            XCTFail("a 100-byte capture file was accepted")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("maximumFileBytes"), error.message)
        }
        await listener.stop()
        echo.cancel()
    }

    /// An association of `ends` with one exchange, captured, read back by tshark with the
    /// repository's dissector: per packet, the values of `fields` (several in one separated by commas).
    private static func dissect(_ ends: HandshakeEnds, fields: [String], named name: String) async throws -> [[String]] {
        let path = temporaryPath(name)
        let listener = try await ends.listener()
        let echo = startEcho(listener)
        let port = listener.localAddress.port
        var client = ends.client(port)
        client.transport.capture = .pcap(path)
        try await exchange(client, marker: "dissected")
        await listener.stop()
        echo.cancel()

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools/wireshark/sctp-dtls-chunk.lua").path
        let reader = try ChildProcess("/usr/bin/tshark", ["-X", "lua_script:\(script)", "-r", path, "-d", "udp.port==\(port),sctp",
                                                          "-o", "sctp.checksum:CRC-32C", "-T", "fields", "-E", "separator=|",
                                                          "-E", "occurrence=a", "-E", "aggregator=,"] + fields.flatMap { ["-e", $0] })
        let status = await reader.finish(timeout: 30)
        XCTAssertEqual(status, 0, reader.text)
        XCTAssertFalse(reader.text.contains("Lua: Error"), reader.text)
        return reader.text.split(separator: "\n").filter { !$0.hasPrefix("Running as user") }
            .map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// The repository's Wireshark dissector (Tools/wireshark) reads what Wireshark 4.0 cannot: the
    /// 0x8006 parameters of INIT and INIT ACK, the DTLS chunks' headers and, on PPID 4242, the DTLS
    /// 1.3 key management messages, whose ClientHello Wireshark's DTLS dissector then shows.
    func testTheLuaDissectorReadsParametersChunksAndKeyManagement() async throws {
        let packets = try await Self.dissect(HandshakeEnds(method: .dtls13), fields: [
            "sctp.chunk_type", "sctp_dtls_kmp.kmid", "sctp_dtls_kmp.flags", "sctp_dtls_chunk.epoch", "sctp_dtls_chunk.flags.r",
            "sctp_dtls_km.dci", "dtls.handshake.type",
        ], named: "dissector")
        let initChunk = try XCTUnwrap(packets.first { $0[0] == "1" }, "the INIT")
        XCTAssertTrue(initChunk[1].split(separator: ",").contains("193"), "the INIT offers DTLS 1.3 (KMId 193): \(initChunk)")
        let initAck = try XCTUnwrap(packets.first { $0[0] == "2" }, "the INIT ACK")
        XCTAssertFalse(initAck[2].isEmpty, "the INIT ACK's parameter has its flags: \(initAck)")
        let protected = packets.filter { $0[0] == "65" }
        XCTAssertGreaterThan(protected.count, 10)
        XCTAssertTrue(protected.allSatisfy { $0[3] == "3" && $0[4] == "0" }, "primary context of epoch 3: \(protected)")
        let clientHello = try XCTUnwrap(packets.first { $0[6].split(separator: ",").contains("1") }, "a ClientHello on PPID 4242: \(packets)")
        XCTAssertEqual(clientHello[5], "3", "DCI 3 for the first DTLS connection")
    }

    /// The same dissector reads the TLS 1.3 key management's messages: the T bit and epoch, and the
    /// ClientHello through Wireshark's TLS dissector.
    func testTheLuaDissectorReadsTLSKeyManagement() async throws {
        let packets = try await Self.dissect(HandshakeEnds(method: .tls13), fields: [
            "sctp_dtls_kmp.kmid", "sctp_dtls_km.t", "sctp_dtls_km.epoch", "tls.handshake.type", "sctp_dtls_km.dci",
        ], named: "dissector-tls")
        XCTAssertTrue(packets.contains { $0[0].split(separator: ",").contains("192") }, "an INIT offering TLS 1.3 (KMId 192): \(packets)")
        let clientHello = try XCTUnwrap(packets.first { $0[3].split(separator: ",").contains("1") }, "a TLS ClientHello on PPID 4242: \(packets)")
        XCTAssertEqual(clientHello[1], "0", "T bit clear: records")
        XCTAssertEqual(clientHello[2], "3", "epoch 3")
        XCTAssertTrue(clientHello[4].isEmpty, "not read as a DTLS message: \(clientHello)")
    }
}
