import COpenSSL
import CTapsShims

/// A BIO that reads ciphertext straight out of the buffer the socket just filled and appends
/// outgoing ciphertext to the engine's own buffer, saving the copy a memory BIO pair would make in
/// each direction (the idea swift-nio-ssl's ByteBufferBIO is built on).
enum EngineBIO {
    /// Where the BIO's callbacks find their buffers; owned by the TLSEngine.
    final class Buffers {
        /// Ciphertext that arrived and OpenSSL has not read yet (borrowed during `feed`).
        var inbound = UnsafeRawBufferPointer(start: nil, count: 0)
        var inboundEnded = false
        /// Ciphertext waiting to be written to the layer below, collected in an array that the
        /// socket can keep if the kernel does not take it at once (no copy on that path).
        var outbound: [UInt8] = []
        /// Datagram mode (DTLS): each write is one datagram and is kept apart; each read returns
        /// at most one whole datagram.
        let datagram: Bool
        var outboundDatagrams: [[UInt8]] = []

        init(datagram: Bool = false) {
            self.datagram = datagram
        }
    }

    nonisolated(unsafe) private static let method: OpaquePointer = {
        // Built once; OpenSSL only reads a BIO_METHOD after it is set up.
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        let method = BIO_meth_new(type, "swift-taps engine")!
        BIO_meth_set_write_ex(method) { bio, data, length, written in
            guard let bio, let data, let buffers = EngineBIO.buffers(bio) else { return 0 }
            taps_BIO_clear_retry_flags(bio)
            if buffers.datagram {
                buffers.outboundDatagrams.append(Array(UnsafeRawBufferPointer(start: data, count: length)))
            } else {
                buffers.outbound.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
            }
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
