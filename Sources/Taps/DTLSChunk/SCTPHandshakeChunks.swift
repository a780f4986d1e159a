/// The few SCTP control chunks the DTLS chunk's negotiation reads or writes on the packet path
/// (RFC 9260 section 3.3), without parsing anything else. All offsets are into whole packets, the
/// 12-byte common header first.
enum SCTPHandshakeChunks {
    static let initType: UInt8 = 1
    static let initAckType: UInt8 = 2
    static let abortType: UInt8 = 6
    static let cookieEchoType: UInt8 = 10
    static let cookieAckType: UInt8 = 11

    static let common = SCTPPacket.commonHeaderLength
    /// INIT and INIT ACK: chunk header (4), initiate tag, a_rwnd, stream counts, initial TSN (16),
    /// then parameters.
    static let initFixedLength = 20
    /// usrsctp's state cookie starts with a 112-byte header (struct sctp_state_cookie) and then
    /// copies the peer's whole INIT chunk, then its own INIT ACK up to the cookie; a 20-byte HMAC
    /// ends it (PLATFORM-NOTES, checked with a probe).
    static let usrsctpCookieHeaderLength = 112
    static let cookieSignatureLength = 20

    static func firstChunkType(_ packet: UnsafeRawBufferPointer) -> UInt8? {
        packet.count >= common + 4 ? packet[common] : nil
    }

    static func chunkLength(_ packet: UnsafeRawBufferPointer, at offset: Int) -> Int? {
        guard offset + 4 <= packet.count else { return nil }
        let length = Int(packet[offset + 2]) << 8 | Int(packet[offset + 3])
        return length >= 4 && offset + length <= packet.count ? length : nil
    }

    static func uint32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    /// The initiate tag of the INIT or INIT ACK chunk at `offset`.
    static func initiateTag(_ packet: UnsafeRawBufferPointer, chunkAt offset: Int) -> UInt32? {
        guard offset + 8 <= packet.count else { return nil }
        return uint32(packet, at: offset + 4)
    }

    /// The 0x8006 parameter of the INIT or INIT ACK chunk at `offset`, bounded by `end`.
    static func keyManagementParameter(_ packet: UnsafeRawBufferPointer, chunkAt offset: Int, end: Int? = nil) -> DTLSKeyManagementParameter? {
        guard let length = chunkLength(packet, at: offset) else { return nil }
        let limit = min(end ?? packet.count, offset + length)
        var cursor = offset + initFixedLength
        while cursor + 4 <= limit {
            let type = UInt16(packet[cursor]) << 8 | UInt16(packet[cursor + 1])
            let parameterLength = Int(packet[cursor + 2]) << 8 | Int(packet[cursor + 3])
            guard parameterLength >= 4, cursor + parameterLength <= limit else { return nil }
            if type == DTLSKeyManagementParameter.type {
                return DTLSKeyManagementParameter.parse(packet[cursor..<(cursor + parameterLength)])
            }
            cursor += (parameterLength + 3) & ~3
        }
        return nil
    }

    /// Writes the packet (an INIT or INIT ACK, the only chunk) with `parameter` added at the end of
    /// its chunk into `output`; returns the new length. The chunk is padded to 4 first; the chunk
    /// length counts the parameter but not its padding (RFC 9260 section 3.2).
    static func appending(_ parameter: DTLSKeyManagementParameter, to packet: UnsafeRawBufferPointer,
                          into output: UnsafeMutableRawBufferPointer) -> Int? {
        guard let length = chunkLength(packet, at: common) else { return nil }
        let paddedChunk = (length + 3) & ~3
        let wire = parameter.wireBytes
        let total = common + paddedChunk + (wire.count + 3) & ~3
        guard output.count >= total else { return nil }
        let copied = min(packet.count, common + paddedChunk)
        UnsafeMutableRawBufferPointer(rebasing: output[0..<copied]).copyMemory(from: UnsafeRawBufferPointer(rebasing: packet[0..<copied]))
        for index in copied..<total { output[index] = 0 }
        for (index, byte) in wire.enumerated() { output[common + paddedChunk + index] = byte }
        let newLength = paddedChunk + wire.count
        output[common + 2] = UInt8(newLength >> 8)
        output[common + 3] = UInt8(newLength & 0xFF)
        return total
    }

    /// An ABORT answering an INIT or INIT ACK (RFC 9260 section 8.4 for the INIT): ports swapped,
    /// the verification tag the chunk's initiate tag, T bit clear, one error cause of four bytes.
    /// The checksum is left for the path to fill.
    static func abort(answering packet: UnsafeRawBufferPointer, causeCode: UInt16) -> [UInt8]? {
        guard let tag = initiateTag(packet, chunkAt: common) else { return nil }
        return abort(answering: packet, verificationTag: tag, causeCode: causeCode)
    }

    /// An ABORT to the sender of `packet` with the peer's verification tag given.
    static func abort(answering packet: UnsafeRawBufferPointer, verificationTag tag: UInt32, causeCode: UInt16) -> [UInt8] {
        abort(addressing: [packet[2], packet[3], packet[0], packet[1]] + withUnsafeBytes(of: tag.bigEndian, Array.init), causeCode: causeCode)
    }

    /// An ABORT packet (RFC 9260 section 3.3.7), T bit clear, with one error cause whose body is
    /// `causeInfo`: `addressing` is the common header's first 8 bytes (source port, destination
    /// port, the peer's verification tag). The checksum is left for the path to fill.
    static func abort(addressing: [UInt8], causeCode: UInt16, causeInfo: [UInt8] = []) -> [UInt8] {
        let causeLength = 4 + causeInfo.count
        let chunkLength = 4 + causeLength
        var abort = addressing + [0, 0, 0, 0]
        abort += [abortType, 0, UInt8(chunkLength >> 8), UInt8(chunkLength & 0xFF)]
        abort += [UInt8(causeCode >> 8), UInt8(causeCode & 0xFF), UInt8(causeLength >> 8), UInt8(causeLength & 0xFF)] + causeInfo
        return abort + [UInt8](repeating: 0, count: (4 - abort.count % 4) % 4)
    }

    /// RFC 9260 section 3.3.10's name of an error cause, with its code.
    static func causeName(_ code: UInt16) -> String {
        let names: [UInt16: String] = [
            1: "Invalid Stream Identifier", 2: "Missing Mandatory Parameter", 3: "Stale Cookie Error", 4: "Out of Resource",
            5: "Unresolvable Address", 6: "Unrecognized Chunk Type", 7: "Invalid Mandatory Parameter",
            8: "Unrecognized Parameters", 9: "No User Data", 10: "Cookie Received While Shutting Down",
            11: "Restart of an Association with New Addresses", 12: "User-Initiated Abort", 13: "Protocol Violation",
        ]
        return "\(names[code] ?? "error cause") \(code)"
    }

    static let userInitiatedAbort: UInt16 = 12

    /// The text of an ABORT's User-Initiated Abort cause (its Upper Layer Abort Reason), when it
    /// has one that is UTF-8; control characters are replaced, so a peer cannot forge log lines.
    static func abortReason(_ bytes: UnsafeRawBufferPointer, chunkAt offset: Int = common) -> String? {
        guard bytes.count >= offset + 4, bytes[offset] == abortType, let length = chunkLength(bytes, at: offset) else { return nil }
        let end = min(bytes.count, offset + length)
        var cursor = offset + 4
        while cursor + 4 <= end {
            let code = UInt16(bytes[cursor]) << 8 | UInt16(bytes[cursor + 1])
            let causeLength = Int(bytes[cursor + 2]) << 8 | Int(bytes[cursor + 3])
            guard causeLength >= 4, cursor + causeLength <= end else { return nil }
            if code == userInitiatedAbort, causeLength > 4,
               let text = String(validating: UnsafeRawBufferPointer(rebasing: bytes[(cursor + 4)..<(cursor + causeLength)]), as: UTF8.self) {
                return String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) })
            }
            cursor += (causeLength + 3) & ~3
        }
        return nil
    }

    /// The error cause codes of the ABORT chunk at `offset` (a packet's first chunk by default),
    /// for reporting why a peer refused.
    static func abortCauses(_ bytes: UnsafeRawBufferPointer, chunkAt offset: Int = common) -> [UInt16] {
        guard bytes.count >= offset + 4, bytes[offset] == abortType, let length = chunkLength(bytes, at: offset) else { return [] }
        var causes: [UInt16] = []
        var cursor = offset + 4
        while cursor + 4 <= offset + length {
            causes.append(UInt16(bytes[cursor]) << 8 | UInt16(bytes[cursor + 1]))
            let causeLength = Int(bytes[cursor + 2]) << 8 | Int(bytes[cursor + 3])
            guard causeLength >= 4 else { break }
            cursor += (causeLength + 3) & ~3
        }
        return causes
    }

    /// What a COOKIE ECHO (first chunk) tells about the handshake it completes: the client's INIT
    /// parameter and both initiate tags, read from usrsctp's cookie. Nil if the cookie is not one
    /// usrsctp made in the layout we know. The cookie is only trusted once usrsctp accepts it.
    static func cookieContents(_ packet: UnsafeRawBufferPointer) -> (clientParameter: DTLSKeyManagementParameter?, clientTag: UInt32, serverTag: UInt32)? {
        guard firstChunkType(packet) == cookieEchoType, let length = chunkLength(packet, at: common) else { return nil }
        let end = common + length - cookieSignatureLength
        let initOffset = common + 4 + usrsctpCookieHeaderLength
        guard initOffset + initFixedLength <= end, packet[initOffset] == initType,
              let initLength = chunkLength(packet, at: initOffset), initOffset + initLength <= end else { return nil }
        let initAckOffset = initOffset + (initLength + 3) & ~3
        guard initAckOffset + 8 <= end, packet[initAckOffset] == initAckType,
              let clientTag = initiateTag(packet, chunkAt: initOffset),
              let serverTag = initiateTag(packet, chunkAt: initAckOffset) else { return nil }
        return (keyManagementParameter(packet, chunkAt: initOffset, end: initOffset + initLength), clientTag, serverTag)
    }
}
