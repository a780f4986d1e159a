/// Reads TSNs out of plain SCTP packets (RFC 9260 section 3.3) so the DTLS chunk can tell when the
/// peer has acknowledged everything sent under an old key context: the highest TSN of DATA or
/// I-DATA (RFC 8260) going out, the cumulative TSN ack of a SACK or NR-SACK coming in.
enum SCTPTSNScan {
    static let dataType: UInt8 = 0
    static let sackType: UInt8 = 3
    static let nrSackType: UInt8 = 16
    static let iDataType: UInt8 = 64

    /// The highest TSN of the packet's DATA and I-DATA chunks; nil when it has none.
    static func highestDataTSN(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        var highest: UInt32?
        forEachChunk(packet) { type, offset in
            guard type == dataType || type == iDataType, offset + 8 <= packet.count else { return }
            let tsn = SCTPHandshakeChunks.uint32(packet, at: offset + 4)
            if highest.map({ precedes($0, tsn) }) ?? true { highest = tsn }
        }
        return highest
    }

    /// The cumulative TSN ack of the packet's SACK or NR-SACK; nil when it has none.
    static func cumulativeTSNAck(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        var ack: UInt32?
        forEachChunk(packet) { type, offset in
            guard type == sackType || type == nrSackType, offset + 8 <= packet.count else { return }
            ack = SCTPHandshakeChunks.uint32(packet, at: offset + 4)
        }
        return ack
    }

    /// Serial number arithmetic on 32-bit TSNs (RFC 1982): whether `a` comes before `b`.
    static func precedes(_ a: UInt32, _ b: UInt32) -> Bool {
        a != b && b &- a < 1 << 31
    }

    private static func forEachChunk(_ packet: UnsafeRawBufferPointer, _ body: (UInt8, Int) -> Void) {
        var offset = SCTPPacket.commonHeaderLength
        while let length = SCTPHandshakeChunks.chunkLength(packet, at: offset) {
            body(packet[offset], offset)
            offset += (length + 3) & ~3
        }
    }
}
