import Foundation
import XCTest

/// A child process whose output is collected as it arrives, for tests that talk to real programs
/// (`openssl s_server`, `openssl s_client`, the example binaries).
final class ChildProcess: @unchecked Sendable {
    // @unchecked Sendable: `output` is guarded by `lock`; the rest is set in init.
    private let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var output = ""

    /// `environment` adds to (or replaces in) this process's environment.
    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = input
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.output += String(decoding: data, as: UTF8.self) }
        }
        try Self.withSignalsUnblocked { try process.run() }
    }

    /// Runs `body` with no signal blocked on this thread: a child inherits the spawning thread's
    /// mask, and the concurrency runtime's threads block SIGTERM and SIGINT, which would leave a
    /// child deaf to `terminate()`.
    private static func withSignalsUnblocked<T>(_ body: () throws -> T) rethrows -> T {
        var none = sigset_t(), previous = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    var text: String { lock.withLock { output } }

    func write(_ text: String) { input.fileHandleForWriting.write(Data(text.utf8)) }
    func closeInput() { try? input.fileHandleForWriting.close() }

    /// Waits until the output contains `needle`; returns false on timeout.
    @discardableResult
    func waitFor(_ needle: String, timeout: Double = 10) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if text.contains(needle) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return text.contains(needle)
    }

    /// Waits for the process to exit (killing it after `timeout`) and returns its status.
    @discardableResult
    func finish(timeout: Double = 10) async -> Int32 {
        // Polls: Foundation's waitUntilExit can hang when called off the main thread on Linux.
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            process.terminate()
            for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
        return process.terminationStatus
    }

    /// Sends `signal` (SIGTERM lets dumpcap write out what it captured and exit).
    func send(signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// The path of a product built beside the test bundle (e.g. "taps-echo").
    static func product(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// `openssl s_server` on 127.0.0.1:`port` with the test identity (unless `withIdentity` is false),
    /// serving `connections` connections; returns once it accepts (throws with its output if it never does).
    static func openSSLServer(port: UInt16, _ options: [String], withIdentity: Bool = true, connections: Int = 1) async throws -> ChildProcess {
        let pki = TestPKI.shared
        let identity = withIdentity ? ["-cert", pki.serverCert, "-key", pki.serverKey] : ["-nocert"]
        let server = try ChildProcess("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:\(port)"] + identity + options
                                                          + ["-naccept", "\(connections)"])
        guard await server.waitFor("ACCEPT") else {
            server.terminate()
            throw NSError(domain: "s_server", code: 1, userInfo: [NSLocalizedDescriptionKey: "not accepting: \(server.text)"])
        }
        return server
    }

    /// `taps-echo listen --port 0` with `options`; returns once it listens, with the port it printed.
    static func echoServer(_ options: [String]) async throws -> (ChildProcess, String) {
        let server = try ChildProcess(product("taps-echo"), ["listen", "--port", "0"] + options)
        guard await server.waitFor("listening on"),
              let line = server.text.split(separator: "\n").first(where: { $0.hasPrefix("listening on") }),
              let port = line.split(separator: ":").last else {
            server.terminate()
            throw NSError(domain: "taps-echo", code: 1, userInfo: [NSLocalizedDescriptionKey: "not listening: \(server.text)"])
        }
        return (server, String(port))
    }
}
