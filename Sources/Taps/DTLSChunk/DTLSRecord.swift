/// The DTLS 1.3 record layer pieces the chunk uses (RFC 9147 section 4): the unified header, record
/// number reconstruction and encryption, and DTLSInnerPlaintext.
enum DTLSRecord {
    /// DTLSInnerPlaintext.type for application data (RFC 8446 section 5.1); the DTLS chunk carries
    /// SCTP chunks as application data.
    static let applicationData: UInt8 = 23

    /// The unified header (RFC 9147 section 4): 0 0 1 C S L E E, then the connection ID (never
    /// here), an 8- or 16-bit sequence number and an optional 16-bit length.
    struct UnifiedHeader: Equatable {
        var epochBits: UInt8
        /// The sequence number's low bits as they are on the wire (masked).
        var wireSequence: UInt16
        var sequenceLength: Int
        /// The length field, when the header has one.
        var length: Int?

        /// The chunk's configuration (draft "DTLS Chunk"): S=1, L=0, C=0, so 0x28 | epoch & 3.
        static let chunkFixedBits: UInt8 = 0x28
        static let chunkLength = 3

        var byteCount: Int { 1 + sequenceLength + (length == nil ? 0 : 2) }

        var firstByte: UInt8 {
            0x20 | (sequenceLength == 2 ? 0x08 : 0) | (length == nil ? 0 : 0x04) | (epochBits & 3)
        }

        /// Parses a header at the start of `bytes`. Headers with a connection ID are refused: the
        /// chunk never uses them (draft "DTLS Considerations") and we never negotiate them.
        static func parse(_ bytes: UnsafeRawBufferPointer) -> UnifiedHeader? {
            guard let first = bytes.first, first & 0xE0 == 0x20, first & 0x10 == 0 else { return nil }
            let sequenceLength = first & 0x08 != 0 ? 2 : 1
            let hasLength = first & 0x04 != 0
            let count = 1 + sequenceLength + (hasLength ? 2 : 0)
            guard bytes.count >= count else { return nil }
            let sequence = sequenceLength == 2 ? UInt16(bytes[1]) << 8 | UInt16(bytes[2]) : UInt16(bytes[1])
            let length = hasLength ? Int(bytes[1 + sequenceLength]) << 8 | Int(bytes[2 + sequenceLength]) : nil
            return UnifiedHeader(epochBits: first & 3, wireSequence: sequence, sequenceLength: sequenceLength, length: length)
        }
    }

    /// The full sequence number whose low `bits` bits are `low` and that is closest to `expected`
    /// (RFC 9147 section 4.2.2).
    static func reconstructSequence(low: UInt64, bits: Int, expected: UInt64) -> UInt64 {
        let span: UInt64 = 1 << UInt64(bits)
        let candidate = (expected & ~(span - 1)) | low
        var best = candidate
        func distance(_ value: UInt64) -> UInt64 { value > expected ? value - expected : expected - value }
        if candidate >= span, distance(candidate - span) < distance(best) { best = candidate - span }
        if candidate <= UInt64.max - span, distance(candidate + span) < distance(best) { best = candidate + span }
        return best
    }

    /// Opens one DTLS 1.3 record (header and encrypted record) with `cipher`: removes the record-number
    /// mask, reconstructs the sequence number from `expected`, checks it with `isFresh`, and decrypts
    /// into `output` (at least the encrypted record's length). The additional data is the header as
    /// sent with the sequence number unmasked (RFC 9147 section 4.2.3: the mask is applied after
    /// encryption). Returns the sequence number and the length of DTLSInnerPlaintext.
    static func open(_ record: UnsafeRawBufferPointer, cipher: RecordCipher, expected: UInt64,
                     isFresh: (UInt64) -> Bool, into output: UnsafeMutableRawPointer) -> OpenResult {
        guard let header = UnifiedHeader.parse(record) else { return .malformed }
        var end = record.count
        if let length = header.length {
            guard header.byteCount + length <= record.count else { return .malformed }
            end = header.byteCount + length
        }
        let encrypted = UnsafeRawBufferPointer(rebasing: record[header.byteCount..<end])
        // The mask's sample is 16 bytes; a shorter record cannot even hold a tag and a content type.
        guard encrypted.count >= DTLSChunkCipherSuite.tagLength + 1 else { return .malformed }
        let (mask0, mask1) = cipher.sequenceMask(sample: encrypted.baseAddress!)
        let low: UInt64 = header.sequenceLength == 2
            ? UInt64(header.wireSequence ^ (UInt16(mask0) << 8 | UInt16(mask1)))
            : UInt64(UInt8(truncatingIfNeeded: header.wireSequence) ^ mask0)
        let sequence = reconstructSequence(low: low, bits: 8 * header.sequenceLength, expected: expected)
        guard isFresh(sequence) else { return .replayed(sequence) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: header.byteCount) { aad in
            for index in 0..<header.byteCount { aad[index] = record[index] }
            if header.sequenceLength == 2 {
                aad[1] = UInt8(truncatingIfNeeded: low >> 8)
                aad[2] = UInt8(truncatingIfNeeded: low)
            } else {
                aad[1] = UInt8(truncatingIfNeeded: low)
            }
            guard cipher.open(sequence: sequence, header: UnsafeRawBufferPointer(aad), ciphertext: encrypted, into: output) else {
                return .failedAuthentication
            }
            return .opened(sequence: sequence, innerLength: encrypted.count - DTLSChunkCipherSuite.tagLength)
        }
    }

    enum OpenResult: Equatable {
        case opened(sequence: UInt64, innerLength: Int)
        case malformed
        case replayed(UInt64)
        case failedAuthentication
    }

    /// Splits DTLSInnerPlaintext (content, type, zero padding; RFC 9147 section 4 / RFC 8446 section
    /// 5.4) into the content's length and its type; nil when it is all zeros.
    static func innerContent(_ inner: UnsafeRawBufferPointer) -> (length: Int, type: UInt8)? {
        var index = inner.count - 1
        while index >= 0, inner[index] == 0 { index -= 1 }
        guard index >= 0 else { return nil }
        return (index, inner[index])
    }
}
