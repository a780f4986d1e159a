internal import CUsrSCTP
import Glibc
import Synchronization

/// usrsctp for the whole process. It is started once with `usrsctp_init_nothreads` (no receive or
/// timer threads) on one event loop, whose libuv timer drives usrsctp's timers every 10 ms while an
/// SCTP socket exists; every usrsctp call happens on that loop. Packets leave through the output
/// callback towards the `SCTPPath` usrsctp names, and arrive through `SCTPPath`'s `usrsctp_conninput`.
final class SCTPRuntime: @unchecked Sendable {
    // @unchecked Sendable: everything but `livePaths` is touched on `loop` only; `livePaths` has a lock
    // because usrsctp's iterator thread may, rarely, call the output callback.
    static let shared = SCTPRuntime(loop: EventLoopGroup.shared.loops[0])

    /// The loop every SCTP association of this process lives on.
    let loop: EventLoop
    private var timer: UVTimer?
    private var lastTick: UInt64 = 0
    /// Sockets open in usrsctp; the timer runs while there are any.
    private var openSockets = 0
    /// Paths usrsctp may send on, by their `sconn_addr` handle.
    private let livePaths = Mutex<Set<UInt>>([])

    /// usrsctp's tick (its own timer threads use 10 ms).
    static let tickMilliseconds: UInt64 = 10

    /// Where usrsctp's process-wide statistics go: the metrics of the newest path that has any.
    private var statisticsMetrics: StackMetrics?
    /// usrsctp's retransmitted DATA chunks when they were last reported.
    private var reportedRetransmissions: UInt32 = 0
    private var ticksSinceReport = 0
    /// How often the statistics are reported while associations exist (and when the last one ends).
    static let statisticsInterval = 1_000 / Int(tickMilliseconds)

    private init(loop: EventLoop) {
        self.loop = loop
        usrsctp_init_nothreads(0, { address, buffer, length, _, _ in
            guard let address, let buffer else { return -1 }
            return SCTPRuntime.shared.output(to: address, UnsafeMutableRawBufferPointer(start: buffer, count: length))
        }, nil)
        // We compute and check CRC32c on the packet path (SCTPPacket).
        usrsctp_enable_crc32c_offload()
        // Room for a bandwidth-delay product on fast paths; raised before any socket exists.
        usrsctp_sysctl_set_sctp_sendspace(4 * 1024 * 1024)
        usrsctp_sysctl_set_sctp_recvspace(4 * 1024 * 1024)
        // RFC 3758 partial reliability and RFC 6525 stream reconfiguration, offered on every association.
        usrsctp_sysctl_set_sctp_pr_enable(1)
        usrsctp_sysctl_set_sctp_reconfig_enable(1)
        // No ECN: the UDP path cannot carry the IP ECN bits to usrsctp.
        usrsctp_sysctl_set_sctp_ecn_enable(0)
    }

    /// SCTP connections and listeners live on this runtime's loop (usrsctp is one instance per process).
    func requireLoop(_ loop: EventLoop) throws(TransportError) {
        guard loop === self.loop else {
            throw .notSupported("SCTP runs on the process's SCTP loop (usrsctp is one instance per process); leave Preconnection.loop unset")
        }
    }

    // MARK: Sockets and the timer (loop thread)

    func socketOpened() {
        openSockets += 1
        guard timer == nil else { return }
        let timer = UVTimer(loop: loop)
        self.timer = timer
        lastTick = loop.nowMilliseconds
        timer.start(after: Self.tickMilliseconds, repeat: Self.tickMilliseconds) { [unowned self] in
            let now = loop.nowMilliseconds
            usrsctp_handle_timers(UInt32(truncatingIfNeeded: now - lastTick))
            lastTick = now
            ticksSinceReport += 1
            if ticksSinceReport >= Self.statisticsInterval { reportStatistics() }
        }
    }

    /// A socket was closed (after its association finished shutting down or was aborted).
    func socketClosed() {
        openSockets -= 1
        guard openSockets == 0 else { return }
        timer?.close()
        timer = nil
        reportStatistics()
    }

    // MARK: Statistics (loop thread)

    /// Later associations report usrsctp's statistics to `metrics`' factory.
    func reportStatistics(to metrics: StackMetrics) {
        if statisticsMetrics == nil { reportedRetransmissions = Self.retransmittedDataChunks() }
        statisticsMetrics = metrics
    }

    /// Adds what usrsctp counted since the last report (usrsctp keeps no per-association counts).
    private func reportStatistics() {
        ticksSinceReport = 0
        guard let statisticsMetrics else { return }
        let total = Self.retransmittedDataChunks()
        let added = total &- reportedRetransmissions
        reportedRetransmissions = total
        if added > 0 { statisticsMetrics.sctpRetransmissions.increment(by: Int(added)) }
    }

    private static func retransmittedDataChunks() -> UInt32 {
        var statistics = sctpstat()
        usrsctp_get_stat(&statistics)
        return statistics.sctps_sendretransdata
    }

    // MARK: Paths

    func register(_ path: SCTPPath) -> UnsafeMutableRawPointer {
        let handle = Unmanaged.passUnretained(path).toOpaque()
        livePaths.withLock { _ = $0.insert(UInt(bitPattern: handle)) }
        usrsctp_register_address(handle)
        return handle
    }

    func deregister(_ handle: UnsafeMutableRawPointer) {
        usrsctp_deregister_address(handle)
        livePaths.withLock { _ = $0.remove(UInt(bitPattern: handle)) }
    }

    /// usrsctp's output callback: one SCTP packet for the path `handle` names, which protects it
    /// (DTLS chunk), fills its checksum and sends it.
    private func output(to handle: UnsafeMutableRawPointer, _ packet: UnsafeMutableRawBufferPointer) -> Int32 {
        let key = UInt(bitPattern: handle)
        guard livePaths.withLock({ $0.contains(key) }) else { return -1 }
        if loop.inEventLoop {
            Unmanaged<SCTPPath>.fromOpaque(handle).takeUnretainedValue().send(packet)
        } else {
            // usrsctp's iterator thread: hand a copy to the loop, where the path lives.
            let copy = [UInt8](packet)
            loop.execute { [self] in
                guard livePaths.withLock({ $0.contains(key) }), let address = UnsafeMutableRawPointer(bitPattern: key) else { return }
                Unmanaged<SCTPPath>.fromOpaque(address).takeUnretainedValue().send(copy)
            }
        }
        return 0
    }
}
