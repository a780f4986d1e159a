import CUsrSCTP
import Synchronization

/// Told what happens on the path under an association.
protocol SCTPPathOwner: AnyObject {
    func pathDidBecomeReady()
    func pathDidFail(_ error: TransportError)
    func pathDidReportSoftError(_ error: TransportError)
}

/// The packet-in / packet-out interface between usrsctp and a datagram layer (RFC 6951: each UDP
/// datagram carries exactly one SCTP packet, common header first). usrsctp knows the path by its
/// `sconn_addr` handle. Outgoing packets get their CRC32c in the runtime's output callback; incoming
/// ones are checked here, and a short packet or a bad checksum is counted and dropped. This is where
/// a packet filter (the DTLS chunk layer) will sit. Loop thread only.
final class SCTPPath: LayerDelegate {
    let lower: Layer
    private let runtime: SCTPRuntime
    private(set) var handle: UnsafeMutableRawPointer?
    weak var owner: SCTPPathOwner?

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

    func send(_ packet: UnsafeRawBufferPointer) {
        guard handle != nil else { return }
        lower.write(packet, completion: nil)
    }

    func send(_ packet: [UInt8]) {
        guard handle != nil else { return }
        lower.write(packet, completion: nil)
    }

    /// Stops taking packets from usrsctp and releases the layer below.
    func close() {
        if let handle { runtime.deregister(handle) }
        handle = nil
        lower.close()
    }

    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard let handle else { return }
        switch SCTPPacket.verify(bytes) {
        case .valid:
            usrsctp_conninput(handle, bytes.baseAddress, bytes.count, 0)
        case .tooShort:
            Self.droppedTooShort.add(1, ordering: .relaxed)
        case .badChecksum:
            Self.droppedBadChecksum.add(1, ordering: .relaxed)
        }
    }

    func layerDidBecomeReady() { owner?.pathDidBecomeReady() }
    func layerDidReadEndOfStream() {}
    func layerDidFail(_ error: TransportError) { owner?.pathDidFail(error) }
    func layerDidReportSoftError(_ error: TransportError) { owner?.pathDidReportSoftError(error) }
}
