import Dispatch
import Glibc
import Synchronization

/// One pcap file (and its rotations) per path for the whole process. The loop thread builds each
/// record whole (pcap record header, IPv4 or IPv6 header, UDP header, packet) into a pending
/// buffer; a serial queue writes the buffer out and fills in the checksums that cost a pass over the
/// packet (the UDP checksum over IPv6, and SCTP's CRC32c for packets captured where they have none).
/// Format: libpcap with LINKTYPE_RAW (101), microsecond timestamps (https://www.tcpdump.org/linktypes.html).
final class PcapWriter: @unchecked Sendable {
    // @unchecked Sendable: `pending` is behind its Mutex; `file` is touched only on `queue`.
    static let linkTypeRaw: UInt32 = 101
    static let snapLength: UInt32 = 262_144
    static let droppedPackets = Atomic<Int>(0)

    private static let open = Mutex<[String: PcapWriter]>([:])

    /// The writer of `path`, made (and the file truncated) on first use in this process.
    static func shared(_ path: String, capture: PacketCapture) -> PcapWriter {
        open.withLock { writers in
            if let writer = writers[path] { return writer }
            let writer = PcapWriter(path: path, capture: capture)
            writers[path] = writer
            return writer
        }
    }

    static func flushAll() {
        for writer in open.withLock({ Array($0.values) }) { writer.queue.sync {} }
    }

    /// What the queue must fill in once a record is complete.
    struct Fixup {
        enum Kind { case udpOverIPv6, sctpChecksum, both }
        let recordStart: Int
        let kind: Kind
    }

    private struct Pending {
        var bytes: [UInt8] = []
        var fixups: [Fixup] = []
        var flushScheduled = false
    }

    private struct File {
        var descriptor: Int32 = -1
        var size = 0
    }

    private let path: String
    private let capture: PacketCapture
    private let pending = Mutex(Pending())
    private let queue: DispatchQueue
    private var file = File()

    private init(path: String, capture: PacketCapture) {
        self.path = path
        self.capture = capture
        queue = DispatchQueue(label: "taps.pcap")
        queue.async { self.openFile() }
    }

    deinit { if file.descriptor >= 0 { close(file.descriptor) } }

    /// One UDP datagram carrying `packet` from `source` to `destination`. `needsSCTPChecksum`: the
    /// packet's CRC32c field is not what the wire would carry (a plain packet of the DTLS chunk).
    func append(_ packet: UnsafeRawBufferPointer, from source: SocketAddress, to destination: SocketAddress, needsSCTPChecksum: Bool) {
        let ipv6 = destination.family == .ipv6
        let ipHeaderLength = ipv6 ? 40 : 20
        let captured = min(packet.count, 65_535 - 8 - (ipv6 ? 0 : 20))
        let recordLength = 16 + ipHeaderLength + 8 + captured
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        let schedule = pending.withLock { pending -> Bool in
            guard pending.bytes.count + recordLength <= capture.maximumPendingBytes else {
                Self.droppedPackets.add(1, ordering: .relaxed)
                return false
            }
            let start = pending.bytes.count
            PcapRecord.append(to: &pending.bytes, seconds: UInt32(truncatingIfNeeded: time.tv_sec),
                              microseconds: UInt32(time.tv_nsec / 1_000), packet: UnsafeRawBufferPointer(rebasing: packet[..<captured]),
                              originalLength: packet.count, source: source, destination: destination)
            switch (ipv6, needsSCTPChecksum) {
            case (true, true): pending.fixups.append(Fixup(recordStart: start, kind: .both))
            case (true, false): pending.fixups.append(Fixup(recordStart: start, kind: .udpOverIPv6))
            case (false, true): pending.fixups.append(Fixup(recordStart: start, kind: .sctpChecksum))
            case (false, false): break
            }
            defer { pending.flushScheduled = true }
            return !pending.flushScheduled
        }
        if schedule { queue.async { self.flush() } }
    }

    // MARK: On the queue

    private func flush() {
        var (bytes, fixups) = pending.withLock { pending in
            pending.flushScheduled = false
            defer { pending.bytes = []; pending.fixups = [] }
            return (pending.bytes, pending.fixups)
        }
        bytes.withUnsafeMutableBytes { buffer in
            for fixup in fixups { PcapRecord.fill(fixup, in: buffer) }
        }
        var offset = 0
        while offset < bytes.count {
            let recordLength = 16 + PcapRecord.capturedLength(bytes, at: offset)
            if file.size + recordLength > capture.maximumFileBytes && file.size > PcapRecord.fileHeaderLength { rotate() }
            write(bytes[offset..<(offset + recordLength)])
            offset += recordLength
        }
    }

    private func openFile() {
        file.descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        file.size = 0
        write(PcapRecord.fileHeader(snapLength: Self.snapLength, linkType: Self.linkTypeRaw)[...])
    }

    /// `path` becomes `path.1`, `path.1` becomes `path.2`, ..., keeping `files` files in all.
    private func rotate() {
        if file.descriptor >= 0 { close(file.descriptor) }
        if capture.files > 1 {
            for generation in stride(from: capture.files - 1, to: 0, by: -1) {
                let from = generation == 1 ? path : "\(path).\(generation - 1)"
                rename(from, "\(path).\(generation)")
            }
        }
        openFile()
    }

    private func write(_ bytes: ArraySlice<UInt8>) {
        guard file.descriptor >= 0 else { return }
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let written = Glibc.write(file.descriptor, buffer.baseAddress! + done, buffer.count - done)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                done += written
            }
        }
        file.size += bytes.count
    }
}
