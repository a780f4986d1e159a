/// Where an SCTP stack's packets are captured (`TransportProperties.capture`): the wire file, and
/// for dtls-chunk-sctp the file of plain packets. Made once per recipe.
struct SCTPCapture: Sendable {
    let wire: PcapWriter
    let plain: PcapWriter?

    /// Nil when neither the properties nor `TAPS_PCAP` ask for a capture.
    init?(_ capture: PacketCapture?, plainToo: Bool) throws(TransportError) {
        guard let capture else { return nil }
        try capture.validate()
        wire = PcapWriter.shared(capture.path, capture: capture)
        plain = plainToo ? PcapWriter.shared(capture.plainPath, capture: capture) : nil
    }
}

/// One path's capture: the addresses of its UDP datagrams, learnt from the layer below once it has
/// them (a client's local port is known once its socket is bound).
final class SCTPPathCapture {
    private let capture: SCTPCapture
    private let lower: Layer
    private var addresses: (local: SocketAddress, remote: SocketAddress)?

    init(_ capture: SCTPCapture, lower: Layer) {
        self.capture = capture
        self.lower = lower
    }

    /// A packet as it crossed the wire (protected, if the stack protects).
    func wire(_ packet: UnsafeRawBufferPointer, outgoing: Bool) {
        record(capture.wire, packet, outgoing: outgoing, needsSCTPChecksum: false)
    }

    /// A packet before protection or after its removal (DTLS chunk stacks): its checksum field is
    /// not the one it had or will have on the wire, so the writer computes it.
    func plain(_ packet: UnsafeRawBufferPointer, outgoing: Bool) {
        guard let writer = capture.plain else { return }
        record(writer, packet, outgoing: outgoing, needsSCTPChecksum: true)
    }

    private func record(_ writer: PcapWriter, _ packet: UnsafeRawBufferPointer, outgoing: Bool, needsSCTPChecksum: Bool) {
        guard let (local, remote) = resolvedAddresses() else { return }
        writer.append(packet, from: outgoing ? local : remote, to: outgoing ? remote : local, needsSCTPChecksum: needsSCTPChecksum)
    }

    private func resolvedAddresses() -> (SocketAddress, SocketAddress)? {
        if let addresses { return addresses }
        guard let local = lower.localAddress, local.port != 0, let remote = lower.remoteAddress else { return nil }
        addresses = (local, remote)
        return addresses
    }
}
