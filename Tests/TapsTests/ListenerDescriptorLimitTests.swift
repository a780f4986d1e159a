import Foundation
import Synchronization
import XCTest
@testable import Taps

/// At the file-descriptor limit a TCP listener resets the connections it cannot take and counts
/// each one (libuv's own accept closed them without a word); once descriptors are free it accepts
/// again.
final class ListenerDescriptorLimitTests: XCTestCase {
    func testConnectionsBeyondTheDescriptorLimitAreCountedAndAcceptingResumes() async throws {
        let loop = EventLoop(name: "fd-limit")
        defer { loop.shutdown() }
        let listener = try await Preconnection(local: .loopback(), security: .disabled, loop: loop).listen()
        let accepted = Mutex<[Connection]>([])
        let collector = Task { for await connection in listener.connections { accepted.withLock { $0.append(connection) } } }
        defer { collector.cancel() }
        // A peer in another process opens 12 connections at once when told to, and holds them.
        let peer = try ChildProcess("/usr/bin/python3", ["-c", """
            import socket, sys
            port = int(sys.argv[1]); sys.stdin.readline()
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
            print("connected", flush=True); sys.stdin.readline()
            """, "\(listener.localAddress.port)"])
        defer { peer.terminate() }

        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        var lowered = limit
        lowered.rlim_cur = rlim_t(open + 3)  // room for a few connections, not for twelve
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered), 0)
        peer.write("go\n")
        let connected = await peer.waitFor("connected")
        let failed = try await listener.failedEstablishments(within: .seconds(5))
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        XCTAssertTrue(connected, peer.text)
        XCTAssertGreaterThan(failed, 0, "the connections the listener could not take are counted")
        let reason = await listener.lastEstablishmentError
        XCTAssertTrue(reason?.message.contains("out of file descriptors") == true, "\(String(describing: reason))")
        let before = accepted.withLock { $0.count }
        XCTAssertLessThan(before, 12)

        // Descriptors are free again: the listener takes new connections.
        let client = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled)
            .initiate(timeout: .seconds(5))
        let clientAddress = await client.localAddress
        let clientPort = try XCTUnwrap(clientAddress?.port)
        var served = false
        for _ in 0..<250 where !served {
            let remotes = await withTaskGroup(of: UInt16?.self) { group in
                for connection in accepted.withLock({ $0 }) { group.addTask { await connection.remoteAddress?.port } }
                return await group.reduce(into: [UInt16?]()) { $0.append($1) }
            }
            served = remotes.contains(clientPort)
            if !served { try await Task.sleep(for: .milliseconds(20)) }
        }
        XCTAssertTrue(served, "a connection made after the limit was lifted is accepted")
        await client.abort()
        for connection in accepted.withLock({ $0 }) { await connection.abort() }
        peer.closeInput()
        await listener.stop()
    }
}
