import Foundation

/// Writes the SCTP packets of the sctp, tls-sctp and dtls-chunk-sctp stacks to a pcap file that
/// Wireshark and tshark open as is: each packet with the IP and UDP headers of the datagram that
/// carried it (RFC 6951 encapsulation), in both directions, with its real checksum. Read it with
/// `tshark -r FILE -d udp.port==PORT,sctp -o sctp.checksum:CRC-32C`.
///
/// For dtls-chunk-sctp the file holds the packets as they crossed the wire (DTLS chunks), and a
/// second file, `plainPath`, the same packets before protection and after removing it, so SCTP can
/// be read without keys. Every association made with the properties writes to the same files.
///
/// Packets are copied on the connection's loop and written by a background queue; when the writer
/// falls `maximumPendingBytes` behind, further packets are counted in `droppedPackets` and left
/// out. A file that reaches `maximumFileBytes` is rotated: `path` becomes `path.1`, `path.1`
/// becomes `path.2`, and so on, keeping `files` files in all.
public struct PacketCapture: Sendable, Hashable {
    /// The file packets are written to (SCTP-over-UDP and UDP as raw IP with UDP headers).
    public var path: String
    /// The size at which a file is rotated.
    public var maximumFileBytes: Int
    /// How many files a rotation keeps, the current one included.
    public var files: Int
    /// How far the writer may fall behind before packets are left out (and counted).
    public var maximumPendingBytes: Int = 16 << 20

    /// A pcap capture to `path`, rotated at `maximumFileBytes`, keeping `files` files. `%p` in the
    /// path becomes the process ID, so processes sharing one setting write files of their own.
    public static func pcap(_ path: String, maximumFileBytes: Int = 64 << 20, files: Int = 2) -> PacketCapture {
        PacketCapture(path: path.replacingOccurrences(of: "%p", with: "\(getpid())"), maximumFileBytes: maximumFileBytes, files: files)
    }

    /// The capture `TAPS_PCAP` names, when set and not empty: properties without a capture of their
    /// own use it, so an application can be captured without changing it.
    public static var environment: PacketCapture? {
        guard let path = ProcessInfo.processInfo.environment["TAPS_PCAP"], !path.isEmpty else { return nil }
        return .pcap(path)
    }

    /// The file of the plain packets of dtls-chunk-sctp: `capture.pcap` gives `capture.plain.pcap`.
    public var plainPath: String {
        let url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().lastPathComponent
        let fileExtension = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
        return url.deletingLastPathComponent().appendingPathComponent(stem + ".plain" + fileExtension).path
    }

    /// Packets left out so far, process-wide, because a writer fell too far behind.
    public static var droppedPackets: Int { PcapWriter.droppedPackets.load(ordering: .relaxed) }

    /// Waits until every packet captured so far is in its file (e.g. before reading it, or at exit).
    public static func flush() { PcapWriter.flushAll() }

    func validate() throws(TransportError) {
        guard !path.isEmpty else { throw .invalidArgument("capture: the pcap path is empty") }
        guard maximumFileBytes >= 4_096 else { throw .invalidArgument("capture: maximumFileBytes must be at least 4096, not \(maximumFileBytes)") }
        guard files >= 1 else { throw .invalidArgument("capture: files must be at least 1, not \(files)") }
    }
}
