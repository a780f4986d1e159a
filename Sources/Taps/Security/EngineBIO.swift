internal import COpenSSL
internal import CTapsShims

/// A BIO that reads ciphertext straight out of the buffer the socket just filled and appends
/// outgoing ciphertext to the engine's own buffer, saving the copy a memory BIO pair would make in
/// each direction (the idea swift-nio-ssl's ByteBufferBIO is built on).
enum EngineBIO {
    /// How the ciphertext OpenSSL writes is cut into the writes the layer below gets.
    enum OutputFraming {
        /// One byte stream (TLS over TCP): writes are appended, and cut wherever.
        case stream
        /// Every TLS record its own write, never two in one and never one split: TLS over SCTP user
        /// messages (RFC 3436 section 3.2) and TLS key management over SCTP. OpenSSL coalesces a
        /// handshake flight (its buffering BIO) and several records of a large write into one BIO
        /// write, and may end a write inside a record, so records are cut by their headers here.
        case recordPerWrite
        /// DTLS: each BIO write is one datagram and is kept apart; each read returns at most one
        /// whole datagram.
        case datagramPerWrite
    }

    /// Where the BIO's callbacks find their buffers; owned by the TLSEngine.
    final class Buffers {
        /// Ciphertext that arrived and OpenSSL has not read yet (borrowed during `feed`).
        var inbound = UnsafeRawBufferPointer(start: nil, count: 0)
        var inboundEnded = false
        /// Ciphertext waiting to be written to the layer below, collected in an array that the
        /// socket can keep if the kernel does not take it at once (no copy on that path).
        var outbound: [UInt8] = []
        let framing: OutputFraming
        /// Datagrams or records waiting to be written, each one write (the non-stream framings).
        var outboundUnits: [[UInt8]] = []
        /// Record framing: the start of a record whose end OpenSSL has not written yet.
        private var partialRecord: [UInt8] = []
        /// Record framing, once the engine seals its own records: turns each whole record OpenSSL
        /// writes into the one that goes out (nil drops it; `resealFailed` then says so).
        var reseal: ((UnsafeRawBufferPointer) -> [UInt8]?)?
        private(set) var resealFailed = false

        init(framing: OutputFraming = .stream) {
            self.framing = framing
        }

        var datagram: Bool { framing == .datagramPerWrite }

        /// Takes one BIO write.
        func append(_ bytes: UnsafeRawBufferPointer) {
            switch framing {
            case .stream: outbound.append(contentsOf: bytes)
            case .datagramPerWrite: outboundUnits.append(Array(bytes))
            case .recordPerWrite: appendRecords(bytes)
            }
        }

        /// The TLS record header (RFC 8446 section 5.1): type (1), legacy version (2), length (2).
        static let recordHeaderLength = 5

        /// Cuts whole records out of what OpenSSL wrote; a record's start waits for its end.
        private func appendRecords(_ bytes: UnsafeRawBufferPointer) {
            // The common case, exactly one whole record in the write, costs one copy.
            if partialRecord.isEmpty, let length = Self.recordLength(bytes, at: 0), length == bytes.count {
                appendRecord(bytes)
                return
            }
            partialRecord.append(contentsOf: bytes)
            var start = 0
            while let length = partialRecord.withUnsafeBytes({ Self.recordLength($0, at: start) }),
                  start + length <= partialRecord.count {
                partialRecord.withUnsafeBytes { appendRecord(UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
                start += length
            }
            partialRecord.removeFirst(start)
        }

        private func appendRecord(_ record: UnsafeRawBufferPointer) {
            guard let reseal else { return outboundUnits.append(Array(record)) }
            if let resealed = reseal(record) { outboundUnits.append(resealed) } else { resealFailed = true }
        }

        /// The whole length (header included) of the record starting at `offset`, once its header is there.
        static func recordLength(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int? {
            guard bytes.count - offset >= recordHeaderLength else { return nil }
            return recordHeaderLength + (Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4]))
        }
    }

    nonisolated(unsafe) private static let method: OpaquePointer = {
        // Built once; OpenSSL only reads a BIO_METHOD after it is set up.
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        let method = BIO_meth_new(type, "swift-taps engine")!
        BIO_meth_set_write_ex(method) { bio, data, length, written in
            guard let bio, let data, let buffers = EngineBIO.buffers(bio) else { return 0 }
            taps_BIO_clear_retry_flags(bio)
            buffers.append(UnsafeRawBufferPointer(start: data, count: length))
            written?.pointee = length
            return 1
        }
        BIO_meth_set_read_ex(method) { bio, data, length, readCount in
            guard let bio, let data, let buffers = EngineBIO.buffers(bio) else { return 0 }
            taps_BIO_clear_retry_flags(bio)
            let available = buffers.inbound.count
            guard available > 0 else {
                if !buffers.inboundEnded { taps_BIO_set_retry_read(bio) }
                readCount?.pointee = 0
                return 0
            }
            let count = min(length, available)
            UnsafeMutableRawPointer(data).copyMemory(from: buffers.inbound.baseAddress!, byteCount: count)
            // A datagram is read whole or not at all: what did not fit is dropped, as a socket would.
            buffers.inbound = buffers.datagram ? UnsafeRawBufferPointer(start: nil, count: 0)
                                               : UnsafeRawBufferPointer(rebasing: buffers.inbound[count...])
            readCount?.pointee = count
            return 1
        }
        BIO_meth_set_ctrl(method) { bio, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_PENDING: return bio.flatMap(EngineBIO.buffers).map { $0.inbound.count } ?? 0
            case BIO_CTRL_WPENDING: return 0
            case BIO_CTRL_EOF: return bio.flatMap(EngineBIO.buffers).map { $0.inboundEnded && $0.inbound.isEmpty ? 1 : 0 } ?? 1
            case BIO_CTRL_DGRAM_QUERY_MTU, BIO_CTRL_DGRAM_GET_FALLBACK_MTU: return 0
            // Bytes a datagram spends on headers below DTLS (IPv4 20 + UDP 8).
            case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD: return 28
            default: return 0
            }
        }
        BIO_meth_set_create(method) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(method) { bio in
            guard let bio, let data = BIO_get_data(bio) else { return 1 }
            Unmanaged<Buffers>.fromOpaque(data).release()
            BIO_set_data(bio, nil)
            return 1
        }
        return method
    }()

    private static func buffers(_ bio: OpaquePointer) -> Buffers? {
        BIO_get_data(bio).map { Unmanaged<Buffers>.fromOpaque($0).takeUnretainedValue() }
    }

    /// A new BIO over `buffers` (which it retains until freed).
    static func make(_ buffers: Buffers) -> OpaquePointer {
        let bio = BIO_new(method)!
        BIO_set_data(bio, Unmanaged.passRetained(buffers).toOpaque())
        return bio
    }
}
