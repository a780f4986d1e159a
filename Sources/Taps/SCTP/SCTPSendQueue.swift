internal import CUsrSCTP
import Glibc

/// Messages waiting for room in usrsctp's send buffer, in priority order, with the stream resets
/// queued behind them. A message goes in pieces (explicit end-of-record) when it is larger than the room
/// left; its message properties map to SCTP (RFC 9622 section 9.1.3 on RFC 6458 section 5.3):
/// unordered delivery, PR-SCTP lifetime or retransmission limit (RFC 3758), the PPID.
struct SCTPSendQueue {
    struct Message {
        let streamID: UInt16
        /// The stream's connPriority when the message was sent.
        let streamPriority: Int
        let bytes: [UInt8]
        let properties: MessageProperties
        let completion: ((TransportError?) -> Void)?
        /// Bytes usrsctp has taken so far.
        var offset = 0

        /// Goes before `other`: a more important stream (connPriority), then a more important message
        /// (msgPriority, RFC 9622 section 9.1.3.2); lower values first. Within one stream only
        /// msgPriority reorders: a stream whose connPriority changed while messages wait keeps their
        /// order (TLS records on a tls-sctp stream must not pass each other). Key management
        /// (`urgentPriority`) goes before everything else all the same.
        func outranks(_ other: Message) -> Bool {
            if streamID == other.streamID && streamPriority != SCTPSendQueue.urgentPriority {
                return properties.priority < other.properties.priority
            }
            return (streamPriority, properties.priority) < (other.streamPriority, other.properties.priority)
        }
    }

    enum Entry {
        case message(Message)
        /// RFC 6525 outgoing stream reset, once the stream's messages before it are handed over.
        case reset(UInt16)
    }

    enum Outcome { case drained, blocked, failed(TransportError) }

    /// The stream priority of messages that go before all others (DTLS-chunk key management).
    static let urgentPriority = Int.min

    private var entries: [Entry] = []
    private var head = 0

    /// The most one usrsctp_sendv call hands over.
    private static let pieceSize = 256 * 1024

    var isEmpty: Bool { head == entries.count }
    var count: Int { entries.count - head }
    /// The waiting messages' streams and first bytes, in the order they go.
    var waiting: [(streamID: UInt16, first: UInt8?)] {
        entries[head...].compactMap { entry in
            guard case .message(let message) = entry else { return nil }
            return (message.streamID, message.bytes.first)
        }
    }

    /// Messages wait in priority order (`Message.outranks`), first come first among equals; one that
    /// usrsctp has taken in part, and stream resets, are never overtaken.
    mutating func enqueue(_ entry: Entry) {
        guard case .message(let message) = entry else {
            entries.append(entry)
            return
        }
        var index = entries.count
        while index > head, case .message(let queued) = entries[index - 1], queued.offset == 0, message.outranks(queued) {
            index -= 1
        }
        entries.insert(entry, at: index)
    }

    /// Hands as much as usrsctp takes; stops when its buffer is full.
    ///
    /// Small messages are bundled into full packets (RFC 9260 section 6.10). usrsctp sends at once
    /// with SCTP_NODELAY; without it (Nagle) it holds data while some is in flight and sends all it
    /// holds once that reaches a packet, which splits the last message off into a packet of its own.
    /// So Nagle is on while a packet's worth is handed over and off for the message that fills it (or
    /// the last one), whose send makes usrsctp send exactly that packet. Nagle never stalls: it holds
    /// data only while some is in flight, whose SACK sends the rest.
    mutating func flush(into socket: SCTPSocket, packetCapacity: Int) -> Outcome {
        defer { socket.setNoDelay(true) }
        var packetFill = 0
        // With nothing in flight usrsctp sends the first message at once, Nagle or not.
        var nextGoesAlone = !socket.hasDataInFlight
        while head < entries.count {
            switch entries[head] {
            case .reset(let streamID):
                socket.setNoDelay(true)
                reset(streamID, on: socket)
            case .message(var message):
                let remaining = message.bytes.count - message.offset
                let piece = min(remaining, Self.pieceSize)
                let isLast = piece == remaining
                let chunk = Self.chunkSize(remaining)
                if message.offset == 0 && isLast && chunk <= packetCapacity {
                    packetFill += chunk
                    let next = nextWholeMessageChunkSize()
                    let fillsPacket = nextGoesAlone || next.map { packetFill + $0 > packetCapacity } ?? true
                    nextGoesAlone = false
                    socket.setNoDelay(fillsPacket)
                    if fillsPacket { packetFill = 0 }
                } else {
                    // Larger than a packet: usrsctp fragments it into full packets itself.
                    socket.setNoDelay(true)
                    packetFill = 0
                    nextGoesAlone = false
                }
                var info = Self.sendInfo(message, endOfRecord: isLast)
                let sent = message.bytes.withUnsafeBytes { bytes in
                    usrsctp_sendv(socket.raw, bytes.baseAddress! + message.offset, piece, nil, 0, &info,
                                  socklen_t(MemoryLayout<sctp_sendv_spa>.size), UInt32(SCTP_SENDV_SPA), 0)
                }
                if sent < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK { return .blocked }
                    let error = TransportError.io("SCTP send failed: \(String(cString: strerror(errno)))")
                    message.completion?(error)
                    advance()
                    if errno == ENOTCONN || errno == EPIPE || errno == ECONNRESET { return .failed(error) }
                    continue
                }
                message.offset += sent
                if message.offset < message.bytes.count {
                    entries[head] = .message(message)
                    if sent < piece { return .blocked }
                    continue
                }
                message.completion?(nil)
            }
            advance()
        }
        return .drained
    }

    /// A DATA chunk's size on the wire: header and payload padded to 4 bytes (RFC 9260 section 3.3.1).
    private static func chunkSize(_ payload: Int) -> Int { 16 + (payload + 3) & ~3 }

    /// The chunk size of the message after the head, if it is one that goes whole.
    private func nextWholeMessageChunkSize() -> Int? {
        guard head + 1 < entries.count, case .message(let next) = entries[head + 1] else { return nil }
        return Self.chunkSize(next.bytes.count)
    }

    private mutating func advance() {
        head += 1
        if head == entries.count {
            entries.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= entries.count {
            // A queue that never quite drains (a sender always ahead of usrsctp) must not keep every
            // message it handed over, and their bytes, until it does.
            entries.removeFirst(head)
            head = 0
        }
    }

    /// Drops the messages of `streamID` that usrsctp has not started to take.
    mutating func discard(_ streamID: UInt16, error: TransportError) {
        var kept: [Entry] = []
        var dropped: [Message] = []
        for entry in entries[head...] {
            if case .message(let message) = entry, message.streamID == streamID, message.offset == 0 {
                dropped.append(message)
            } else {
                kept.append(entry)
            }
        }
        entries = kept
        head = 0
        for message in dropped { message.completion?(error) }
    }

    mutating func failAll(_ error: TransportError) {
        let pending = entries[head...]
        entries.removeAll()
        head = 0
        for case .message(let message) in pending { message.completion?(error) }
    }

    private static func sendInfo(_ message: Message, endOfRecord: Bool) -> sctp_sendv_spa {
        var info = sctp_sendv_spa()
        info.sendv_flags = UInt32(SCTP_SEND_SNDINFO_VALID)
        info.sendv_sndinfo.snd_sid = message.streamID
        var flags = endOfRecord ? UInt16(SCTP_EOR) : 0
        if !message.properties.ordered { flags |= UInt16(SCTP_UNORDERED) }
        info.sendv_sndinfo.snd_flags = flags
        info.sendv_sndinfo.snd_ppid = (message.properties.sctpPayloadProtocolIdentifier ?? 0).bigEndian
        if let lifetime = message.properties.lifetime {
            info.sendv_flags |= UInt32(SCTP_SEND_PRINFO_VALID)
            info.sendv_prinfo.pr_policy = UInt16(SCTP_PR_SCTP_TTL)
            info.sendv_prinfo.pr_value = UInt32(clamping: max(1, lifetime.milliseconds))
        } else if !message.properties.reliable {
            // Unreliable: sent once, never retransmitted.
            info.sendv_flags |= UInt32(SCTP_SEND_PRINFO_VALID)
            info.sendv_prinfo.pr_policy = UInt16(SCTP_PR_SCTP_RTX)
            info.sendv_prinfo.pr_value = 0
        }
        return info
    }

    private func reset(_ streamID: UInt16, on socket: SCTPSocket) {
        // struct sctp_reset_streams with one stream id after its header.
        let size = MemoryLayout<sctp_reset_streams>.size + MemoryLayout<UInt16>.size
        var request = [UInt8](repeating: 0, count: size)
        request.withUnsafeMutableBytes { bytes in
            var header = sctp_reset_streams()
            header.srs_assoc_id = 0  // ignored on one-to-one sockets
            header.srs_flags = UInt16(SCTP_STREAM_RESET_OUTGOING)
            header.srs_number_streams = 1
            bytes.storeBytes(of: header, as: sctp_reset_streams.self)
            bytes.storeBytes(of: streamID, toByteOffset: MemoryLayout<sctp_reset_streams>.size, as: UInt16.self)
            _ = usrsctp_setsockopt(socket.raw, Int32(IPPROTO_SCTP), SCTP_RESET_STREAMS, bytes.baseAddress, socklen_t(size))
        }
    }
}
