import CTapsShims
import Synchronization
import XCTest
@testable import Taps

final class EventLoopTests: XCTestCase {
    actor Counter {
        nonisolated let loop: EventLoop
        var value = 0
        nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
        init(loop: EventLoop) { self.loop = loop }
        func increment() -> Bool {
            value += 1
            return loop.inEventLoop
        }
    }

    /// Once a loop has started, glibc keeps the memory of messages the application has read instead
    /// of handing it back to the kernel: a second of sctp transfer (taps-bench, in processes of their
    /// own, whose glibc starts with its defaults) faults pages in a few thousand times, not the
    /// 35,000 - 80,000 times it takes when every few megabytes read are given back and faulted in again.
    func testReadMessagesLeaveTheirMemoryToTheNextOnes() async throws {
        func childFaults() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_CHILDREN.rawValue, &usage)
            return usage.ru_minflt
        }
        let before = childFaults()
        let bench = try ChildProcess(ChildProcess.product("taps-bench"),
                                     ["--stack", "sctp", "--mtu", "16384", "--seconds", "1", "--rounds", "1", "--only", "taps"])
        let status = await bench.finish(timeout: 60)
        XCTAssertEqual(status, 0, bench.text)
        XCTAssertTrue(bench.text.contains("MB/s"), bench.text)
        let faults = childFaults() - before
        XCTAssertGreaterThan(faults, 0, "the children's page faults are counted")
        XCTAssertLessThan(faults, 20_000, "page faults of the transfer's two processes")
    }

    func testActorsPinnedToTheLoopRunOnItsThread() async throws {
        let loop = EventLoop(name: "test-executor")
        let counter = Counter(loop: loop)
        for _ in 0..<1000 { let onLoop = await counter.increment(); XCTAssertTrue(onLoop) }
        let value = await counter.value
        XCTAssertEqual(value, 1000)
        XCTAssertFalse(loop.inEventLoop)
        XCTAssertEqual(loop.shutdown(), 0)
    }

    /// A loop asked to run on one CPU has its thread bound there; a loop not asked is left free.
    func testLoopThreadCanBeBoundToACPU() async throws {
        try XCTSkipIf(ProcessInfo.processInfo.activeProcessorCount < 2, "binding is only observable with two CPUs")
        let bound = EventLoop(name: "test-bound", cpu: 1)
        let free = EventLoop(name: "test-free")
        XCTAssertEqual(bound.boundCPU, 1)
        XCTAssertNil(free.boundCPU)
        let boundThread = try await bound.submit { taps_thread_bound_cpu() }
        let freeThread = try await free.submit { taps_thread_bound_cpu() }
        XCTAssertEqual(boundThread, 1, "the loop's own thread runs on CPU 1 only")
        XCTAssertEqual(freeThread, -1, "an unbound loop may run on any CPU")
        bound.shutdown()
        free.shutdown()
    }

    /// Read buffers start half a page into a page, where the kernel's copy into them runs at full
    /// speed (UVTCPSocket.readBufferPageOffset), for plain TCP's and TLS's buffer sizes alike.
    func testSocketReadBuffersStartHalfAPageIn() async throws {
        let loop = EventLoop(name: "test-read-buffer")
        let offsets = try await loop.submit { () -> [Int] in
            [UVTCPSocket.defaultReadBufferSize, UVTCPSocket.largeReadBufferSize].map { size in
                let socket = UVTCPSocket(loop: loop, readBufferSize: size)
                defer { socket.close() }
                socket.startReading()
                return socket.readBufferStart.map { Int(bitPattern: $0) % 4096 } ?? -1
            }
        }
        XCTAssertEqual(offsets, [2048, 2048])
        loop.shutdown()
    }

    /// Writing again and again to a connection whose peer reset it: each write fails with an
    /// error (ECONNRESET, then EPIPE) and the process carries on; SIGPIPE is ignored once a loop
    /// exists (without that the second write would end the test process).
    func testWritesToAResetConnectionFailWithoutSIGPIPE() async throws {
        let loop = EventLoop(name: "test-sigpipe")
        XCTAssertEqual(taps_sigpipe_is_ignored(), 1)
        let failures = try await withCheckedThrowingContinuation { (done: CheckedContinuation<[TransportError.Code], any Error>) in
            loop.execute {
                do {
                    let listener = try UVTCPListener(loop: loop, address: SocketAddress(ip: "127.0.0.1", port: 0)!, onConnection: { accepted in
                        // The peer resets soon after; the client writes once the RST has arrived.
                        guard let socket = try? accepted.adopt(on: loop, readBufferSize: UVTCPSocket.defaultReadBufferSize) else { return }
                        _ = UVTimer.schedule(on: loop, after: 20) { socket.reset() }
                    }, onDropped: { _ in })
                    let client = UVTCPSocket(loop: loop)
                    client.connect(to: listener.localAddress) { error in
                        guard error == nil else { return done.resume(throwing: error!) }
                        _ = UVTimer.schedule(on: loop, after: 150) {
                            var codes: [TransportError.Code] = []
                            let chunk = [UInt8](repeating: 1, count: 65_536)
                            for _ in 0..<4 { client.write(chunk) { if let error = $0 { codes.append(error.code) } } }
                            client.close()
                            listener.close()
                            done.resume(returning: codes)
                        }
                    }
                } catch {
                    done.resume(throwing: error)
                }
            }
        }
        XCTAssertFalse(failures.isEmpty, "writes to a reset connection fail")
        XCTAssertTrue(failures.allSatisfy { $0 == .connectionReset }, "ECONNRESET and EPIPE both read as a reset: \(failures)")
        loop.shutdown()
    }

    /// A TCP socket bound to a port and connected to that same port, with nothing listening, meets
    /// itself on Linux (simultaneous open, RFC 9293 section 3.5). A client's ephemeral port can land
    /// on a just-freed listener's port the same way; either is no peer, and refused.
    func testAConnectionThatReachesItselfIsRefused() async throws {
        let loop = EventLoop(name: "test-self-connect")
        var error: TransportError?
        // A port whose earlier connections of other tests still linger makes the kernel refuse the
        // connect itself (EADDRINUSE); another free port then tries again.
        for _ in 0..<5 {
            let probe = try await Preconnection(local: .loopback(), security: .disabled).listen()
            let address = probe.localAddress
            await probe.stop()
            error = await withCheckedContinuation { (done: CheckedContinuation<TransportError?, Never>) in
                loop.execute {
                    let socket = UVTCPSocket(loop: loop)
                    do throws(TransportError) { try socket.bind(address) } catch { return done.resume(returning: error) }
                    socket.connect(to: address) { error in
                        socket.close()
                        done.resume(returning: error)
                    }
                }
            }
            if error?.code != .addressInUse { break }
        }
        XCTAssertEqual(error?.code, .connectionRefused, String(describing: error))
        XCTAssertTrue(error?.message.contains("reached itself") == true, String(describing: error))
        loop.shutdown()
    }

    /// Work submitted from another thread while the loop shuts down either runs or is counted as
    /// dropped, and never reaches the closed wake-up handle (a connection released on another
    /// thread as its loop stopped crashed the process in libuv).
    func testWorkSubmittedDuringShutdownRunsOrIsDropped() {
        for _ in 0..<20 {
            let loop = EventLoop(name: "shutdown-race")
            let ran = Atomic<Int>(0)
            let submitted = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                for _ in 0..<2_000 { loop.execute { ran.add(1, ordering: .relaxed) } }
                submitted.signal()
            }
            loop.shutdown()
            submitted.wait()
            XCTAssertEqual(ran.load(ordering: .relaxed) + loop.discardedAfterShutdown, 2_000)
        }
    }

    func testTaskExecutorPreferenceRunsOnTheLoop() async throws {
        let loop = EventLoop(name: "test-task-executor")
        let onLoop = await Task(executorPreference: loop) { loop.inEventLoop }.value
        XCTAssertTrue(onLoop)
        loop.shutdown()
    }

    func testClosingEverythingLeavesNoHandleOpen() async throws {
        let loop = EventLoop(name: "test-handles")
        let listener = try await Preconnection(local: .loopback(), security: .disabled, loop: loop).listen()
        let echo = startEcho(listener)
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled,
                                                 loop: loop).initiate()
        try await connection.send("ping")
        _ = try await connection.receive()
        let whileOpen = try await loop.openHandleCount()
        XCTAssertEqual(whileOpen, 3, "listener, client and accepted socket")
        await connection.close()
        await listener.stop()
        // The echo side closes once it sees the end of the stream.
        for _ in 0..<200 where try await loop.openHandleCount() > 0 { try await Task.sleep(for: .milliseconds(5)) }
        let afterClose = try await loop.openHandleCount()
        XCTAssertEqual(afterClose, 0)
        echo.cancel()
        XCTAssertEqual(loop.shutdown(), 0, "shutdown finds nothing left open")
    }

    func testShutdownReportsAndClosesLeftoverHandles() async throws {
        let loop = EventLoop(name: "test-leftover")
        let listener = try await Preconnection(local: .loopback(), security: .disabled, loop: loop).listen()
        _ = listener
        XCTAssertEqual(loop.shutdown(), 1)
    }

    /// End-of-turn work runs after the jobs queued in the turn (including ones those jobs queue), in
    /// the order it was asked for, before the loop waits; the loop still shuts down clean.
    func testEndOfTurnWorkRunsAfterTheTurnsJobs() async throws {
        let loop = EventLoop(name: "test-end-of-turn")
        final class Log: @unchecked Sendable { var entries: [String] = [] }  // touched on the loop only
        let log = Log()
        let entries = await withCheckedContinuation { (continuation: CheckedContinuation<[String], Never>) in
            loop.execute {
                for index in 0..<3 {
                    loop.execute {
                        log.entries.append("job \(index)")
                        loop.execute { log.entries.append("follow-up \(index)") }
                        loop.executeAtEndOfTurn {
                            log.entries.append("end \(index)")
                            if index == 2 { continuation.resume(returning: log.entries) }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(entries, ["job 0", "job 1", "job 2", "follow-up 0", "follow-up 1", "follow-up 2", "end 0", "end 1", "end 2"])
        XCTAssertEqual(loop.shutdown(), 0)
    }
}
