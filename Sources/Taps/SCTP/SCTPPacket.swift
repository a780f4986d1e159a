import CTapsShims
import CUsrSCTP

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
}

/// The SCTP common header (RFC 9260 section 3.1) as the packet path checks it: nothing is parsed
/// beyond what decides whether usrsctp sees the packet at all.
enum SCTPPacket {
    /// Source port, destination port, verification tag, checksum.
    static let commonHeaderLength = 12
    /// The header plus one chunk header: the shortest packet worth handing to usrsctp.
    static let minimumLength = commonHeaderLength + 4
    private static let checksumOffset = 8

    enum Verdict: Equatable { case valid, tooShort, badChecksum }

    /// Checks length and checksum. The checksum is computed with its own field as zero (RFC 9260
    /// section 6.8); it is stored little-endian, as usrsctp writes it.
    static func verify(_ packet: UnsafeRawBufferPointer, scratch: inout [UInt8]) -> Verdict {
        guard packet.count >= minimumLength else { return .tooShort }
        let received = packet.loadUnaligned(fromByteOffset: checksumOffset, as: UInt32.self)
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: packet)
        scratch.withUnsafeMutableBytes { $0.storeBytes(of: 0, toByteOffset: checksumOffset, as: UInt32.self) }
        let computed = scratch.withUnsafeBytes { CRC32c.checksum($0) }
        return computed == received ? .valid : .badChecksum
    }

    /// Writes the checksum into an outgoing packet whose checksum field is zero.
    static func fillChecksum(_ packet: inout [UInt8]) {
        guard packet.count >= commonHeaderLength else { return }
        packet.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: 0, toByteOffset: checksumOffset, as: UInt32.self)
            let crc = CRC32c.checksum(UnsafeRawBufferPointer(bytes))
            bytes.storeBytes(of: crc, toByteOffset: checksumOffset, as: UInt32.self)
        }
    }
}
