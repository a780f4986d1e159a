internal import CLibUV
internal import CTapsShims
import Foundation
import Synchronization

/// One libuv loop running on its own thread.
///
/// The loop is a Swift `SerialExecutor` (and `TaskExecutor`): actors whose `unownedExecutor` is this
/// loop run their jobs on the loop thread, beside libuv's own callbacks, so protocol state needs no
/// locks. Work from other threads enters through a queue and a `uv_async_t` wake-up.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `uvLoop`, every handle, `localWork` and `runningWork` are touched only on the loop thread; the
    // cross-thread queue is guarded by `incoming`.

    private enum Work {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    let uvLoop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    /// Work enqueued from the loop thread itself (e.g. a continuation resumed by a read callback)
    /// goes here, without a lock or a wake-up system call; an idle handle, which keeps the next
    /// poll from blocking, runs it.
    private var localWork: [Work] = []
    private var runningWork: [Work] = []
    private let localRunner: UnsafeMutablePointer<uv_idle_t>
    private var localRunnerActive = false
    /// Work to run once the current turn's jobs have run, before the loop polls for I/O: a prepare
    /// handle, started only while something waits.
    private var endOfTurnWork: [() -> Void] = []
    private let endOfTurnRunner: UnsafeMutablePointer<uv_prepare_t>
    /// `wakeupClosed`: shutdown has closed the wake-up handle; work from other threads is dropped.
    private let incoming = Mutex<(work: [Work], wakePending: Bool, wakeupClosed: Bool)>(([], false, false))
    private let threadReady = DispatchSemaphore(value: 0)
    private let threadExited = DispatchSemaphore(value: 0)
    private var loopThread = pthread_t()
    private let stopping = Atomic<Bool>(false)
    private let exited = Atomic<Bool>(false)
    /// Jobs and closures submitted after `shutdown` finished; they cannot run and are dropped.
    private let discarded = Atomic<Int>(0)
    /// Handles the loop opened for its own use (the wake-up); not counted as open by `openHandleCount`.
    private var internalHandles: Set<UnsafeMutableRawPointer> = []

    /// A write to a connection the peer reset fails with EPIPE, reported as a connection error,
    /// instead of raising SIGPIPE, which would end the process (libuv writes with write(2)). Set
    /// once, when the first loop starts, and only if the application left SIGPIPE at its default.
    private static let sigpipeIgnored: Void = taps_ignore_sigpipe_unless_handled()

    /// glibc gives the top of a thread's heap back to the kernel once a little more than it last
    /// mapped for a large block is free (128 KB in a fresh process), so reading a few megabytes of
    /// received messages returned their pages and the next messages faulted them in again (50,000 to
    /// 230,000 page faults in a 3-second dtls-chunk-sctp transfer, a sixth of its throughput). Once
    /// per process, when the first loop starts, glibc's own dynamic threshold is raised so that up to
    /// 8 MB stays (`taps_keep_freed_heap_memory`); an application that set the thresholds itself
    /// keeps its own.
    private static let freedHeapKept: Void = taps_keep_freed_heap_memory()

    /// The loop's name, which its thread carries too.
    public let name: String
    /// The CPU the loop's thread is bound to, if one was asked for and the system allowed it.
    public private(set) var boundCPU: Int?

    /// Starts a loop on a thread of its own.
    /// - Parameters:
    ///   - name: the loop's and its thread's name.
    ///   - cpu: binds the loop's thread to this CPU (0-based), e.g. one loop per core. Unbound, the
    ///     kernel may put two loops that wake each other often (both ends of a local transfer) on
    ///     the same core; binding is the application's call.
    public init(name: String = "taps-loop", cpu: Int? = nil) {
        _ = Self.sigpipeIgnored
        _ = Self.freedHeapKept
        self.name = name
        uvLoop = .allocate(capacity: 1)
        precondition(uv_loop_init(uvLoop) == 0, "uv_loop_init failed")
        wakeup = .allocate(capacity: 1)
        uv_async_init(uvLoop, wakeup) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().drain()
        }
        internalHandles.insert(UnsafeMutableRawPointer(wakeup))
        localRunner = .allocate(capacity: 1)
        uv_idle_init(uvLoop, localRunner)
        internalHandles.insert(UnsafeMutableRawPointer(localRunner))
        endOfTurnRunner = .allocate(capacity: 1)
        uv_prepare_init(uvLoop, endOfTurnRunner)
        internalHandles.insert(UnsafeMutableRawPointer(endOfTurnRunner))
        // The loop retains itself through the wake-up handle until `shutdown` closes it.
        wakeup.pointee.data = Unmanaged.passRetained(self).toOpaque()
        localRunner.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        endOfTurnRunner.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let thread = Thread { [unowned self] in self.run(boundTo: cpu) }
        thread.name = name
        thread.start()
        threadReady.wait()
    }

    private func run(boundTo cpu: Int?) {
        loopThread = pthread_self()
        taps_set_thread_name(String(name.prefix(15)))
        if let cpu, taps_bind_thread_to_cpu(Int32(cpu)) == 0 { boundCPU = cpu }
        threadReady.signal()
        uv_run(uvLoop, UV_RUN_DEFAULT)
        // Every handle is closed now; let pending close callbacks finish and free the loop.
        uv_run(uvLoop, UV_RUN_DEFAULT)
        uv_loop_close(uvLoop)
        // uvLoop's memory stays until deinit: handle owners may still look at it (closed) afterwards.
        exited.store(true, ordering: .releasing)
        threadExited.signal()
    }

    deinit {
        if exited.load(ordering: .acquiring) { uvLoop.deallocate() }
        sharedReadBufferAllocation?.deallocate()
    }

    /// The buffer that TCP sockets on this loop whose reads are handed up borrowed (under TLS) read
    /// into, `UVTCPSocket.largeReadBufferSize` bytes starting `UVTCPSocket.readBufferPageOffset`
    /// into a page. A reader consumes each read before it returns and the loop makes one read at a
    /// time, so one buffer serves every such socket, and an idle connection holds none: a buffer
    /// per socket kept the pages its handshake touched, 8 KB a connection. Loop thread only.
    var sharedReadBuffer: UnsafeMutableRawPointer {
        if let sharedReadBufferAllocation { return sharedReadBufferAllocation + UVTCPSocket.readBufferPageOffset }
        let allocation = UnsafeMutableRawPointer.allocate(byteCount: UVTCPSocket.largeReadBufferSize + UVTCPSocket.readBufferPageOffset,
                                                          alignment: 4096)
        sharedReadBufferAllocation = allocation
        return allocation + UVTCPSocket.readBufferPageOffset
    }
    private var sharedReadBufferAllocation: UnsafeMutableRawPointer?

    /// Work submitted after shutdown, which was dropped.
    public var discardedAfterShutdown: Int { discarded.load(ordering: .relaxed) }

    /// The loop's clock in milliseconds, refreshed now. Loop thread only.
    var nowMilliseconds: UInt64 {
        uv_update_time(uvLoop)
        return uv_now(uvLoop)
    }

    /// True when the caller runs on this loop's thread.
    public var inEventLoop: Bool { pthread_equal(pthread_self(), loopThread) != 0 }

    /// Runs `body` on the loop thread, soon. Safe from any thread.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        submit(.closure(body))
    }

    /// Runs `body` on the loop thread and returns its result.
    public func submit<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        if inEventLoop { return try body() }
        return try await withCheckedThrowingContinuation { continuation in
            execute { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` on the loop thread after the jobs and callbacks of this turn of the loop, before it
    /// waits for I/O. Work that many jobs of one turn add to (a send queue, say) is handed on once per
    /// turn. Loop thread only.
    func executeAtEndOfTurn(_ body: @escaping () -> Void) {
        checkIsolated()
        if endOfTurnWork.isEmpty {
            uv_prepare_start(endOfTurnRunner) { handle in
                guard let handle, let data = handle.pointee.data else { return }
                Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().runEndOfTurnWork()
            }
        }
        endOfTurnWork.append(body)
    }

    private func runEndOfTurnWork() {
        let work = endOfTurnWork
        endOfTurnWork.removeAll(keepingCapacity: true)
        work.forEach { $0() }
        if endOfTurnWork.isEmpty { uv_prepare_stop(endOfTurnRunner) }
    }

    // MARK: SerialExecutor / TaskExecutor

    /// Runs a Swift concurrency job on the loop thread (`SerialExecutor`).
    public func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    /// The loop as a serial executor, for an actor's `unownedExecutor`.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// The loop as a task executor, for `withTaskExecutorPreference` and `Task(executorPreference:)`.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless the caller runs on the loop thread.
    public func checkIsolated() {
        precondition(inEventLoop, "expected to run on event loop \(name)")
    }

    /// Whether the caller runs on the loop thread.
    public func isIsolatingCurrentContext() -> Bool? {
        inEventLoop
    }

    private func submit(_ work: Work) {
        if exited.load(ordering: .acquiring) {
            discarded.add(1, ordering: .relaxed)
            return
        }
        if inEventLoop && !stopping.load(ordering: .relaxed) {
            localWork.append(work)
            if !localRunnerActive {
                localRunnerActive = true
                uv_idle_start(localRunner) { handle in
                    guard let handle, let data = handle.pointee.data else { return }
                    Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().runLocalWork()
                }
            }
            return
        }
        // The wake-up is sent under the lock: shutdown closes (and frees) the handle only after
        // marking it closed under the same lock, so a thread that got past the check cannot
        // touch freed memory (a connection released on another thread as its loop shut down did).
        let accepted = incoming.withLock { state -> Bool in
            guard !state.wakeupClosed else { return false }
            state.work.append(work)
            if !state.wakePending {
                state.wakePending = true
                uv_async_send(wakeup)
            }
            return true
        }
        if !accepted { discarded.add(1, ordering: .relaxed) }
    }

    /// Runs work enqueued from the loop thread; stops the idle handle once nothing is left.
    private func runLocalWork() {
        for _ in 0..<64 {
            guard !localWork.isEmpty else { break }
            // The two arrays trade places, so a batch allocates nothing: `localWork` takes the
            // emptied storage of the previous batch while this one runs.
            swap(&localWork, &runningWork)
            runningWork.forEach(run)
            runningWork.removeAll(keepingCapacity: true)
        }
        if localWork.isEmpty {
            localRunnerActive = false
            uv_idle_stop(localRunner)
        }
    }

    private func run(_ work: Work) {
        switch work {
        case .job(let job):
            job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        case .closure(let body):
            body()
        }
    }

    /// Runs queued work on the loop thread. Bounded rounds so I/O is not starved by work that keeps
    /// enqueueing more; leftovers wake the loop again.
    private func drain() {
        for _ in 0..<64 {
            let batch = incoming.withLock { state -> [Work] in
                let batch = state.work
                state.work.removeAll(keepingCapacity: true)
                if batch.isEmpty { state.wakePending = false }
                return batch
            }
            if batch.isEmpty { return }
            batch.forEach(run)
        }
        incoming.withLock { state in
            if !state.wakeupClosed { uv_async_send(wakeup) }
        }
    }

    // MARK: Handles and shutdown

    /// The number of libuv handles open on this loop that are not the loop's own (and not closing).
    /// Zero after every connection, listener and timer has been closed.
    public func openHandleCount() async throws -> Int {
        try await submit { self.countOpenHandles() }
    }

    private func countOpenHandles() -> Int {
        final class Counter { var count = 0; var skip: Set<UnsafeMutableRawPointer> = [] }
        let counter = Counter()
        counter.skip = internalHandles
        withExtendedLifetime(counter) {
            uv_walk(uvLoop, { handle, arg in
                guard let handle, let arg else { return }
                let counter = Unmanaged<Counter>.fromOpaque(arg).takeUnretainedValue()
                if counter.skip.contains(UnsafeMutableRawPointer(handle)) { return }
                if uv_is_closing(handle) == 0 { counter.count += 1 }
            }, Unmanaged.passUnretained(counter).toOpaque())
        }
        return counter.count
    }

    /// Stops the loop: closes any handle still open (reporting how many there were), lets close
    /// callbacks run, and joins the thread. Returns the number of handles that were still open.
    @discardableResult
    public func shutdown() -> Int {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return 0 }
        let leftover = Mutex(0)
        execute { [self] in
            leftover.withLock { $0 = countOpenHandles() }
            // From here other threads' work is dropped (and counted); what they queued until now runs.
            let last = incoming.withLock { state -> [Work] in
                state.wakeupClosed = true
                defer { state.work.removeAll() }
                return state.work
            }
            last.forEach(run)
            let wakeup = UnsafeMutableRawPointer(self.wakeup)
            uv_walk(uvLoop, { handle, wakeup in
                guard let handle, uv_is_closing(handle) == 0, let data = handle.pointee.data else { return }
                if handle.pointee.type == UV_IDLE || handle.pointee.type == UV_PREPARE {
                    uv_close(handle) { UnsafeMutableRawPointer($0)?.deallocate() }
                } else if UnsafeMutableRawPointer(handle) == wakeup {
                    uv_close(handle) { handle in
                        guard let handle, let data = handle.pointee.data else { return }
                        Unmanaged<EventLoop>.fromOpaque(data).release()
                        UnsafeMutableRawPointer(handle).deallocate()
                    }
                } else {
                    // Every other handle belongs to a UVHandle; closing through it keeps its state true.
                    Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue().close()
                }
            }, wakeup)
        }
        if !inEventLoop { threadExited.wait() }
        return leftover.withLock { $0 }
    }
}
