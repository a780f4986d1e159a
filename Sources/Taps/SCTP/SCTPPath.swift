internal import CUsrSCTP
import Synchronization

/// Told what happens on the path under an association.
protocol SCTPPathOwner: AnyObject {
    func pathDidBecomeReady()
    func pathDidFail(_ error: TransportError)
    func pathDidReportSoftError(_ error: TransportError)
}

/// The packet-in / packet-out interface between usrsctp and a datagram layer (RFC 6951: each UDP
/// datagram carries exactly one SCTP packet, common header first). usrsctp knows the path by its
/// `sconn_addr` handle. Out: usrsctp's packet -> the DTLS chunk filter, if the stack has one
/// (protection, the 0x8006 parameter) -> CRC32c over what goes on the wire -> the datagram layer. In:
/// CRC32c check (a short packet or a bad checksum is counted and dropped) -> the filter ->
/// `usrsctp_conninput`. Loop thread only.
final class SCTPPath: LayerDelegate {
    let lower: Layer
    private let runtime: SCTPRuntime
    private(set) var handle: UnsafeMutableRawPointer?
    weak var owner: SCTPPathOwner?
    /// The DTLS chunk between usrsctp and the datagram layer (stack dtls-chunk-sctp).
    var chunkFilter: DTLSChunkPathFilter?
    /// Packet capture (`TransportProperties.capture`): the wire, and plain packets around the filter.
    var capture: SCTPPathCapture?
    /// Packets each way, drops, and the DTLS chunk's drops (which `reportedChunkDrops` has told).
    var metrics: StackMetrics? {
        didSet { if let metrics { runtime.reportStatistics(to: metrics) } }
    }
    private var reportedChunkDrops = DTLSChunkCounters()

    /// Packets dropped before usrsctp saw them, process-wide (tests and diagnostics read these).
    static let droppedTooShort = Atomic<Int>(0)
    static let droppedBadChecksum = Atomic<Int>(0)

    init(over lower: Layer, runtime: SCTPRuntime = .shared) {
        self.lower = lower
        self.runtime = runtime
        lower.delegate = self
        handle = runtime.register(self)
    }

    deinit {
        if let handle { runtime.deregister(handle) }
    }

    func start() { lower.start() }

    /// One packet from usrsctp; the buffer is usrsctp's for this call, so the checksum is filled in
    /// place. The datagram layer sends before returning, or copies what it must queue.
    func send(_ packet: UnsafeMutableRawBufferPointer) {
        guard handle != nil else { return }
        // Ports and the peer's verification tag, once the peer has given one (an INIT carries 0).
        if packet.count >= SCTPPacket.minimumLength, packet[SCTPPacket.commonHeaderLength] != SCTPHandshakeChunks.initType {
            addressing = packet.loadUnaligned(as: UInt64.self)
        }
        guard let chunkFilter else {
            transmit(packet)
            return
        }
        capture?.plain(UnsafeRawBufferPointer(packet), outgoing: true)
        chunkFilter.output(packet) { transmit($0) }
    }

    func send(_ packet: [UInt8]) {
        var packet = packet
        packet.withUnsafeMutableBytes { send($0) }
    }

    private func transmit(_ packet: UnsafeMutableRawBufferPointer) {
        SCTPPacket.fillChecksum(packet)
        capture?.wire(UnsafeRawBufferPointer(packet), outgoing: true)
        metrics?.packetsSent.increment()
        lower.write(UnsafeRawBufferPointer(packet), completion: nil)
    }

    /// The first 8 bytes of the last packet usrsctp sent after its INIT: source and destination port
    /// and the peer's verification tag.
    private var addressing: UInt64?

    /// Sends an ABORT of our own whose User-Initiated Abort cause carries `reason` (RFC 9260
    /// sections 3.3.7 and 3.3.10.12), addressed like usrsctp's last packet, so the peer learns why
    /// the association ends. usrsctp's own ABORT has no reason, and when its send buffer is full it
    /// refuses one with a reason. Through the DTLS chunk it goes protected like any packet. Nothing
    /// is sent before the peer's tag is known.
    func sendAbort(reason: String) {
        guard let addressing else { return }
        send(SCTPHandshakeChunks.abort(addressing: withUnsafeBytes(of: addressing, Array.init), causeCode: SCTPHandshakeChunks.userInitiatedAbort,
                                       causeInfo: Array(reason.utf8.prefix(Self.maximumAbortReason))))
    }

    /// Enough for a sentence; well inside the smallest path MTU.
    static let maximumAbortReason = 400

    /// Stops taking packets from usrsctp and releases the layer below.
    func close() {
        if let handle { runtime.deregister(handle) }
        handle = nil
        lower.close()
    }

    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard let handle else { return }
        capture?.wire(bytes, outgoing: false)
        metrics?.packetsReceived.increment()
        switch SCTPPacket.verify(bytes) {
        case .valid:
            guard let chunkFilter else {
                usrsctp_conninput(handle, bytes.baseAddress, bytes.count, 0)
                return
            }
            chunkFilter.input(bytes, deliver: { packet in
                capture?.plain(packet, outgoing: false)
                usrsctp_conninput(handle, packet.baseAddress, packet.count, 0)
            }, reply: { abort in
                var abort = abort
                abort.withUnsafeMutableBytes { transmit($0) }
            })
            if let metrics, chunkFilter.protection.counters.packetsDropped != reportedChunkDrops.packetsDropped {
                metrics.recordChunkDrops(chunkFilter.protection.counters, since: &reportedChunkDrops)
            }
        case .tooShort:
            Self.droppedTooShort.add(1, ordering: .relaxed)
            metrics?.droppedTooShort.increment()
        case .badChecksum:
            Self.droppedBadChecksum.add(1, ordering: .relaxed)
            metrics?.droppedBadChecksum.increment()
        }
    }

    func layerDidBecomeReady() { owner?.pathDidBecomeReady() }
    func layerDidReadEndOfStream() {}
    func layerDidFail(_ error: TransportError) { owner?.pathDidFail(error) }
    func layerDidReportSoftError(_ error: TransportError) { owner?.pathDidReportSoftError(error) }
}
