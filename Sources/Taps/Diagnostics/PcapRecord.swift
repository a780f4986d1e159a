import Glibc

/// The bytes of a pcap file: its header and its records, each a raw IP packet (IPv4 or IPv6) with a
/// UDP header and the SCTP packet the datagram carried (RFC 6951). Little-endian pcap fields, as
/// the writing host has them; network order inside the packet.
enum PcapRecord {
    static let fileHeaderLength = 24
    static let recordHeaderLength = 16

    /// The libpcap global header: magic (microsecond timestamps), version 2.4, snap length, link type.
    static func fileHeader(snapLength: UInt32, linkType: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        appendLittleEndian(&bytes, UInt32(0xA1B2_C3D4))
        appendLittleEndian(&bytes, UInt16(2))
        appendLittleEndian(&bytes, UInt16(4))
        appendLittleEndian(&bytes, UInt32(0))  // thiszone
        appendLittleEndian(&bytes, UInt32(0))  // sigfigs
        appendLittleEndian(&bytes, snapLength)
        appendLittleEndian(&bytes, linkType)
        return bytes
    }

    /// Appends one record; the UDP checksum is zero (over IPv4 that means "none", RFC 768; over
    /// IPv6 `fill` computes it later).
    static func append(to bytes: inout [UInt8], seconds: UInt32, microseconds: UInt32, packet: UnsafeRawBufferPointer,
                       originalLength: Int, source: SocketAddress, destination: SocketAddress) {
        let ipv6 = destination.family == .ipv6
        let ipHeaderLength = ipv6 ? 40 : 20
        let udpLength = 8 + originalLength
        appendLittleEndian(&bytes, seconds)
        appendLittleEndian(&bytes, microseconds)
        appendLittleEndian(&bytes, UInt32(ipHeaderLength + 8 + packet.count))
        appendLittleEndian(&bytes, UInt32(ipHeaderLength + udpLength))
        let ipStart = bytes.count
        if ipv6 {
            // RFC 8200 section 3: version 6, payload length, next header UDP, hop limit 64.
            bytes += [0x60, 0, 0, 0]
            appendBigEndian(&bytes, UInt16(clamping: udpLength))
            bytes += [UInt8(IPPROTO_UDP), 64]
            appendAddress(&bytes, source, family: .ipv6)
            appendAddress(&bytes, destination, family: .ipv6)
        } else {
            // RFC 791: version 4, IHL 5, total length, DF, TTL 64, protocol UDP, header checksum.
            bytes += [0x45, 0]
            appendBigEndian(&bytes, UInt16(clamping: 20 + udpLength))
            bytes += [0, 0, 0x40, 0, 64, UInt8(IPPROTO_UDP), 0, 0]
            appendAddress(&bytes, source, family: .ipv4)
            appendAddress(&bytes, destination, family: .ipv4)
            let checksum = bytes.withUnsafeBytes { internetChecksum(UnsafeRawBufferPointer(rebasing: $0[ipStart..<(ipStart + 20)])) }
            bytes[ipStart + 10] = UInt8(checksum >> 8)
            bytes[ipStart + 11] = UInt8(checksum & 0xFF)
        }
        appendBigEndian(&bytes, source.port)
        appendBigEndian(&bytes, destination.port)
        appendBigEndian(&bytes, UInt16(clamping: udpLength))
        bytes += [0, 0]
        bytes += packet
    }

    /// The captured length (IP packet bytes in the file) of the record at `offset`.
    static func capturedLength(_ bytes: [UInt8], at offset: Int) -> Int {
        Int(bytes[offset + 8]) | Int(bytes[offset + 9]) << 8 | Int(bytes[offset + 10]) << 16 | Int(bytes[offset + 11]) << 24
    }

    /// Fills in what `append` left for the writer: the SCTP packet's CRC32c, then the UDP checksum
    /// over IPv6 (RFC 8200 section 8.1: mandatory there).
    static func fill(_ fixup: PcapWriter.Fixup, in buffer: UnsafeMutableRawBufferPointer) {
        let ipStart = fixup.recordStart + recordHeaderLength
        let ipv6 = buffer[ipStart] >> 4 == 6
        let udpStart = ipStart + (ipv6 ? 40 : 20)
        let captured = Int(buffer.load(fromByteOffset: fixup.recordStart + 8, as: UInt32.self).littleEndian)
        let end = ipStart + captured
        if fixup.kind != .udpOverIPv6 {
            SCTPPacket.fillChecksum(UnsafeMutableRawBufferPointer(rebasing: buffer[(udpStart + 8)..<end]))
        }
        if ipv6 && fixup.kind != .sctpChecksum {
            // Pseudo-header: source, destination, UDP length, next header (RFC 8200 section 8.1).
            var sum = partialSum(UnsafeRawBufferPointer(rebasing: buffer[(ipStart + 8)..<(ipStart + 40)]))
            sum += UInt32(end - udpStart) + UInt32(IPPROTO_UDP)
            sum += partialSum(UnsafeRawBufferPointer(rebasing: buffer[udpStart..<end]))
            var checksum = fold(sum)
            if checksum == 0 { checksum = 0xFFFF }
            buffer[udpStart + 6] = UInt8(checksum >> 8)
            buffer[udpStart + 7] = UInt8(checksum & 0xFF)
        }
    }

    /// RFC 1071: the ones' complement of the ones' complement sum of 16-bit words.
    static func internetChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 { fold(partialSum(bytes)) }

    private static func partialSum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var sum: UInt64 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt64(bytes[index]) << 8 }
        while sum >> 32 != 0 { sum = (sum & 0xFFFF_FFFF) + (sum >> 32) }
        return UInt32(sum)
    }

    private static func fold(_ sum: UInt32) -> UInt16 {
        var sum = UInt64(sum)
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// The address's bytes in `family`; an address of the other family (a listener bound to one
    /// family's wildcard) is written as that family's unspecified address.
    private static func appendAddress(_ bytes: inout [UInt8], _ address: SocketAddress, family: SocketAddress.Family) {
        guard address.family == family else {
            bytes += [UInt8](repeating: 0, count: family == .ipv6 ? 16 : 4)
            return
        }
        withUnsafeBytes(of: address.storage) { storage in
            // sockaddr_in: sin_addr at offset 4; sockaddr_in6: sin6_addr at offset 8.
            bytes += family == .ipv6 ? storage[8..<24] : storage[4..<8]
        }
    }

    private static func appendLittleEndian<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func appendBigEndian<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }
}
