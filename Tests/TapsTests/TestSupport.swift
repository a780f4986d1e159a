import Foundation
import XCTest
@testable import Taps

/// Certificates made for one test run with the `openssl` command: a CA, a server certificate for
/// localhost / 127.0.0.1 / ::1, an expired one, and a second, unrelated CA.
final class TestPKI: @unchecked Sendable {
    // @unchecked Sendable: immutable after init.
    let directory: URL
    static let shared = try! TestPKI()

    var caPEM: String { path("ca.pem") }
    var serverCert: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    var expiredCert: String { path("expired.pem") }
    var expiredKey: String { path("expired.key") }
    var otherCA: String { path("other-ca.pem") }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("taps-pki-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let extensions = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
        try Self.run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", path("ca.key"), "-out", caPEM, "-days", "30", "-subj", "/CN=taps test CA"])
        try Self.run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", path("other-ca.key"), "-out", otherCA, "-days", "30", "-subj", "/CN=other CA"])
        let ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        // "renamed": the test CA vouches for another name (an identity change, to a peer that knew "server").
        for (name, days, key) in [("server", "30", ecKey), ("expired", "-1", ecKey), ("rsa", "30", ["-newkey", "rsa:2048"]),
                                  ("ed25519", "30", ["-newkey", "ed25519"]), ("renamed", "30", ecKey)] {
            let host = name == "renamed" ? "renamed.example" : "localhost"
            try Self.run(["req"] + key + ["-nodes",
                          "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(host)"])
            try "\(name == "renamed" ? "subjectAltName=DNS:renamed.example" : extensions)\n".write(toFile: path("ext.cnf"), atomically: true, encoding: .utf8)
            let arguments = ["x509", "-req", "-in", path("\(name).csr"), "-CA", caPEM, "-CAkey", path("ca.key"),
                             "-CAcreateserial", "-out", path("\(name).pem"), "-extfile", path("ext.cnf"),
                             "-days", days]  // -1: not after yesterday, i.e. expired
            try Self.run(arguments)
        }
        // The server identity once more in DER (certificate, and the key as PKCS#8).
        try Self.run(["x509", "-in", serverCert, "-outform", "DER", "-out", path("server.der")])
        try Self.run(["pkcs8", "-topk8", "-nocrypt", "-in", serverKey, "-outform", "DER", "-out", path("server.key.der")])
    }

    /// The server identity with another key type: "rsa" (RSA 2048) or "ed25519", signed by the test
    /// CA; or "renamed", a certificate of the test CA for another name.
    func identity(_ keyType: String) -> SecurityParameters.Identity {
        .files(certificate: path("\(keyType).pem"), key: path("\(keyType).key"))
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "openssl", code: Int(process.terminationStatus), userInfo: [NSLocalizedDescriptionKey: text])
        }
        return text
    }

    /// Server security parameters with the test certificate.
    var serverSecurity: SecurityParameters {
        .server(identity: .pemFiles(certificate: serverCert, key: serverKey))
    }

    /// Client security parameters that trust the test CA.
    var clientSecurity: SecurityParameters {
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: caPEM)
        return security
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound by a listener, then released).
func freePort(udp: Bool = false) async throws -> UInt16 {
    let probe = try await Preconnection(local: .loopback(), transport: udp ? .unreliableDatagram : .reliableInOrderStream,
                                        security: .disabled).listen()
    let port = probe.localAddress.port
    await probe.stop()
    return port
}

extension Listener {
    /// The next connection this listener accepts; throws, failing the test, if the listener ends
    /// first. For tests that take one connection from the listener.
    func firstConnection(file: StaticString = #filePath, line: UInt = #line) async throws -> Connection {
        var incoming = connections.makeAsyncIterator()
        let next = await incoming.next()
        return try XCTUnwrap(next, "the listener ended before it accepted a connection", file: file, line: line)
    }

    /// The failed establishments counted once they reach `count`, or after `timeout`: the
    /// listener's end of a handshake fails on the loop that accepted it, which can be after the
    /// client already has its error.
    func failedEstablishments(reaching count: Int = 1, within timeout: Duration) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        var failed = await failedEstablishments
        while failed < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            failed = await failedEstablishments
        }
        return failed
    }
}

/// Reads until `count` bytes arrived (byte streams deliver partial messages).
func receiveBytes(_ connection: Connection, count: Int) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    while bytes.count < count {
        let message = try await connection.receive()
        if message.content.isEmpty && message.isComplete { break }
        bytes += message.content
    }
    return bytes
}

/// Echoes every message of every accepted connection until the connection ends.
func startEcho(_ listener: Listener) -> Task<Void, Never> {
    Task {
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
}

@discardableResult
func XCTAssertThrowsTransportError<T>(_ code: TransportError.Code, _ body: () async throws -> T,
                                      file: StaticString = #filePath, line: UInt = #line) async -> TransportError? {
    do {
        _ = try await body()
        XCTFail("expected \(code), got success", file: file, line: line)
    } catch let error as TransportError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        return error
    } catch {
        XCTFail("expected TransportError \(code), got \(error)", file: file, line: line)
    }
    return nil
}

/// Aborts `connection` after `delay` unless cancelled first: a test waiting on it then fails with an
/// error instead of hanging (a UDP datagram can be lost even on loopback).
func abort(_ connection: Connection, after delay: Duration) -> Task<Void, Never> {
    Task {
        guard (try? await Task.sleep(for: delay)) != nil else { return }
        await connection.abort()
    }
}

/// The fault counters of the `LossyLayer` under a connection's layers; fails the test when there is
/// none (the connection's layers changed, or the Preconnection had no `lossyPath`).
func lossyCounters(of connection: Connection, file: StaticString = #filePath, line: UInt = #line) async throws -> LossyPath.Counters {
    let counters = await connection.lossyPathCounters
    return try XCTUnwrap(counters, "no LossyLayer under the connection's layers", file: file, line: line)
}

/// The datagrams one end of a connection wrote to its path, as the `LossyLayer` under it saw them.
final class WireLog: @unchecked Sendable {
    // @unchecked Sendable: `written` is only touched under `lock`.
    private let lock = NSLock()
    private var written: [[UInt8]] = []

    func append(_ datagram: [UInt8]) { lock.withLock { written.append(datagram) } }

    var count: Int { lock.withLock { written.count } }

    /// Every datagram written so far, in order.
    var datagrams: [[UInt8]] { lock.withLock { written } }

    /// The size of the largest datagram written.
    var largest: Int { lock.withLock { written.map(\.count).max() ?? 0 } }

    /// Whether every datagram written (from the `after`th on) satisfies `predicate`.
    func all(after skipped: Int = 0, _ predicate: ([UInt8]) -> Bool) -> Bool {
        lock.withLock { written.dropFirst(skipped).allSatisfy(predicate) }
    }

    /// Whether any datagram carries `bytes` in clear.
    func contains(_ bytes: [UInt8]) -> Bool {
        lock.withLock {
            written.contains { datagram in
                datagram.count >= bytes.count && (0...(datagram.count - bytes.count)).contains { datagram[$0..<($0 + bytes.count)].elementsEqual(bytes) }
            }
        }
    }
}

/// Starts recording what `connection`'s end writes to its datagram path (it needs a `lossyPath`).
func watchWire(of connection: Connection, file: StaticString = #filePath, line: UInt = #line) async throws -> WireLog {
    let log = WireLog()
    let installed = try await connection.loop.submit {
        connection.assumeIsolated { connection -> Bool in
            guard let lossy = connection.layer.layerChain.lazy.compactMap({ $0 as? LossyLayer }).first else { return false }
            lossy.observeWrites = { log.append($0) }
            return true
        }
    }
    XCTAssertTrue(installed, "no LossyLayer under the connection's layers", file: file, line: line)
    return log
}

/// Sends 8 MB in 64 KB messages from `client` to the first connection `listener` accepts, whose
/// reader first lets megabytes pile up (reading pauses at the receive queue's high-water mark) and
/// then drains: asserts that every byte arrives, in order, and that the stream ends with a final
/// message. A read that is never resumed makes the test fail after a minute instead of hanging.
func assertBulkTransferIntact(from client: Preconnection, to listener: Listener,
                              file: StaticString = #filePath, line: UInt = #line) async throws {
    let total = 8 * 1024 * 1024, chunk = 65_536
    let pattern = (0..<(chunk + 251)).map { UInt8($0 % 251) }
    let sender = Task {
        let connection = try await client.initiate()
        for offset in stride(from: 0, to: total, by: chunk) {
            try await connection.send(Array(pattern[(offset % 251)..<(offset % 251 + chunk)]))
        }
        await connection.close()
    }
    let accepted = try await listener.firstConnection(file: file, line: line)
    let watchdog = abort(accepted, after: .seconds(60))
    defer { watchdog.cancel() }
    try await Task.sleep(for: .milliseconds(300))  // the queue fills past its high-water mark
    var received = 0
    while true {
        let message = try await accepted.receive()
        // The sender's messages line up so that the stream's byte at offset n is n % 251.
        guard message.content.indices.allSatisfy({ Int(message.content[$0]) == (received + $0) % 251 }) else {
            return XCTFail("the \(message.content.count) bytes from offset \(received) are not what was sent", file: file, line: line)
        }
        received += message.content.count
        if message.isFinal { break }
    }
    XCTAssertEqual(received, total, file: file, line: line)
    await accepted.close()
    try await sender.value
}
