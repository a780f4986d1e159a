internal import CTapsShims
internal import CUsrSCTP

/// CRC32c as SCTP uses it (RFC 9260 appendix A): the CPU's crc32 instruction where it has one (SSE4.2),
/// else usrsctp's table-driven implementation. The SCTP stack turns usrsctp's own checksumming off (its
/// CRC offload) and fills / verifies the field here, on the packet path between usrsctp and the datagram layer.
enum CRC32c {
    static let usesHardware = taps_crc32c_hardware() != 0

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        usesHardware ? taps_crc32c(bytes.baseAddress, bytes.count) : software(bytes)
    }

    static func software(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        usrsctp_crc32c(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
    }

    /// The checksum of an SCTP packet (at least the common header) with its checksum field taken as
    /// zero (RFC 9260 section 6.8). The hardware path reads the packet in place; the software one
    /// works on a copy with the field zeroed.
    static func packetChecksum(_ packet: UnsafeRawBufferPointer) -> UInt32 {
        if usesHardware { return taps_crc32c_sctp(packet.baseAddress, packet.count) }
        var copy = [UInt8](packet)
        copy.withUnsafeMutableBytes { $0.storeBytes(of: 0, toByteOffset: SCTPPacket.checksumOffset, as: UInt32.self) }
        return copy.withUnsafeBytes { software($0) }
    }
}

/// The SCTP common header (RFC 9260 section 3.1) as the packet path checks it: nothing is parsed
/// beyond what decides whether usrsctp sees the packet at all.
enum SCTPPacket {
    /// Source port, destination port, verification tag, checksum.
    static let commonHeaderLength = 12
    /// The header plus one chunk header: the shortest packet worth handing to usrsctp.
    static let minimumLength = commonHeaderLength + 4
    static let checksumOffset = 8

    enum Verdict: Equatable { case valid, tooShort, badChecksum }

    /// Checks length and checksum. The checksum is computed with its own field as zero (RFC 9260
    /// section 6.8); it is stored little-endian, as usrsctp writes it.
    static func verify(_ packet: UnsafeRawBufferPointer) -> Verdict {
        guard packet.count >= minimumLength else { return .tooShort }
        let received = packet.loadUnaligned(fromByteOffset: checksumOffset, as: UInt32.self)
        return CRC32c.packetChecksum(packet) == received ? .valid : .badChecksum
    }

    /// Writes the checksum into an outgoing packet, in place.
    static func fillChecksum(_ packet: UnsafeMutableRawBufferPointer) {
        guard packet.count >= commonHeaderLength else { return }
        let crc = CRC32c.packetChecksum(UnsafeRawBufferPointer(packet))
        packet.storeBytes(of: crc, toByteOffset: checksumOffset, as: UInt32.self)
    }

    static func fillChecksum(_ packet: inout [UInt8]) {
        packet.withUnsafeMutableBytes { fillChecksum($0) }
    }
}
