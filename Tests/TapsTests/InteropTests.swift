import Foundation
import XCTest
@testable import Taps

/// taps-echo against real OpenSSL peers, in both roles.
final class InteropTests: XCTestCase {
    let pki = TestPKI.shared

    func testEchoClientTalksToOpenSSLServer() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-rev"])
        defer { server.terminate() }
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", "\(port)", "--stack", "tls-tcp", "--ca", pki.caPEM,
                                       "--message", "hello openssl"])
        let status = await client.finish()
        XCTAssertEqual(status, 0, client.text)
        XCTAssertTrue(client.text.contains("stack: tls-tcp"), client.text)
        XCTAssertTrue(client.text.contains("tls-version: TLSv1.3"), client.text)
        // s_server -rev answers each line reversed.
        XCTAssertTrue(client.text.contains("lssnepo olleh"), client.text)
    }

    func testOpenSSLClientTalksToEchoServer() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--cert", pki.serverCert, "--key", pki.serverKey,
                                                                "--count", "1"])
        defer { server.terminate() }
        let client = try ChildProcess("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caPEM,
                                                           "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet", "-no_ign_eof"])
        defer { client.terminate() }
        client.write("ping from s_client\n")
        let clientReady = await client.waitFor("ping from s_client")
        XCTAssertTrue(clientReady, "echo not received: \(client.text)")
        client.closeInput()
        let clientStatus = await client.finish(timeout: 5)
        XCTAssertEqual(clientStatus, 0, client.text)
        // The echo server saw a clean end (close_notify), served its one connection and exited.
        let serverStatus = await server.finish(timeout: 5)
        XCTAssertEqual(serverStatus, 0, server.text)
    }

    func testEchoClientRejectsServerWithUntrustedCertificate() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, [])
        defer { server.terminate() }
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", "\(port)", "--stack", "tls-tcp", "--ca", pki.otherCA,
                                       "--message", "never sent"])
        let status = await client.finish()
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(client.text.contains("certificateRejected"), client.text)
        XCTAssertFalse(server.text.contains("never sent"))
    }

    func testEchoOverPlainStacks() async throws {
        for stack in ["tcp", "udp"] {
            let (server, port) = try await ChildProcess.echoServer(["--stack", stack, "--count", "1"])
            defer { server.terminate() }
            let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                          ["connect", "127.0.0.1", port, "--stack", stack, "--message", "over \(stack)"])
            let status = await client.finish()
            XCTAssertEqual(status, 0, client.text)
            XCTAssertTrue(client.text.contains("stack: \(stack)"), client.text)
            XCTAssertTrue(client.text.hasSuffix("over \(stack)\n"), client.text)
        }
    }

    func testOpenSSLDTLSClientTalksToEchoServer() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "dtls-udp", "--cert", pki.serverCert, "--key", pki.serverKey])
        defer { server.terminate() }
        let client = try ChildProcess("/usr/bin/openssl", ["s_client", "-dtls", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caPEM,
                                                           "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"])
        defer { client.terminate() }
        client.write("ping over dtls\n")
        let echoed = await client.waitFor("ping over dtls")
        XCTAssertTrue(echoed, "echo not received: \(client.text)")
    }

    func testEchoPrintsTheSameExportOnBothEnds() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--cert", pki.serverCert, "--key", pki.serverKey,
                                                                "--count", "1", "--export", "EXPORTER-echo:24"])
        defer { server.terminate() }
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", port, "--stack", "tls-tcp", "--ca", pki.caPEM,
                                       "--message", "export please", "--export", "EXPORTER-echo:24"])
        let status = await client.finish()
        XCTAssertEqual(status, 0, client.text)
        let serverPrinted = await server.waitFor("export: ")
        XCTAssertTrue(serverPrinted, server.text)
        func exported(_ text: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix("export: ") }.map { String($0.dropFirst(8)) }
        }
        let ours = try XCTUnwrap(exported(client.text), client.text)
        XCTAssertEqual(ours.count, 48, "24 bytes as lowercase hex")
        XCTAssertEqual(ours, ours.lowercased())
        XCTAssertEqual(exported(server.text), ours)
    }

    private func printed(_ key: String, _ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)) }
    }

    func testEchoWithPSKALPNRequiredInterfacesAndExport() async throws {
        let psk = ["--psk-identity", "echo-psk", "--psk-hex", PSKTests.keyHex]
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--alpn", "demo/2,demo/1", "--count", "1",
                                                                "--export", "EXPORTER-echo:16"] + psk)
        defer { server.terminate() }
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", port, "--alpn", "demo/1,demo/2", "--require", "pski,sske",
                                       "--export", "EXPORTER-echo:16", "--message", "psk echo"] + psk)
        let status = await client.finish()
        XCTAssertEqual(status, 0, client.text)
        XCTAssertEqual(printed("stack", client.text), "tls-tcp")
        XCTAssertEqual(printed("tls-version", client.text), "TLSv1.3")
        XCTAssertEqual(printed("alpn", client.text), "demo/2", "the server's preference wins")
        XCTAssertEqual(printed("resumed", client.text), "no")
        XCTAssertTrue(client.text.hasSuffix("psk echo\n"), client.text)
        let serverPrinted = await server.waitFor("export: ")
        XCTAssertTrue(serverPrinted, server.text)
        XCTAssertEqual(printed("alpn", server.text), "demo/2")
        XCTAssertEqual(printed("export", server.text), printed("export", client.text))
    }

    func testEchoClientCertificates() async throws {
        let (server, port) = try await ChildProcess.echoServer(["--stack", "tls-tcp", "--cert", pki.serverCert, "--key", pki.serverKey,
                                                                "--ca", pki.caPEM])
        defer { server.terminate() }
        let base = ["connect", "127.0.0.1", port, "--stack", "tls-tcp", "--ca", pki.caPEM, "--message", "with a client certificate"]
        let withCertificate = try ChildProcess(ChildProcess.product("taps-echo"),
                                               base + ["--client-cert", pki.path("rsa.pem"), "--client-key", pki.path("rsa.key")])
        let status = await withCertificate.finish()
        XCTAssertEqual(status, 0, withCertificate.text)
        XCTAssertTrue(withCertificate.text.hasSuffix("with a client certificate\n"), withCertificate.text)
        let without = try ChildProcess(ChildProcess.product("taps-echo"), base + ["--timeout", "3"])
        let refused = await without.finish()
        XCTAssertNotEqual(refused, 0, without.text)
    }

    func testEchoRequiringAnInterfaceNoStackHasFailsBeforeConnecting() async throws {
        let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                      ["connect", "127.0.0.1", "9", "--stack", "dtls-udp", "--require", "ku", "--message", "x"])
        let status = await client.finish()
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(client.text.contains("KU required"), client.text)
    }
}
