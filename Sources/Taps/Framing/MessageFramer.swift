/// Turns messages into bytes and back over a byte stream (RFC 9622 section 9.1.2), so message
/// semantics work over TCP and TLS/TCP. A framer is a value; each connection keeps its own
/// `FramerBuffer` of bytes not yet parsed.
public protocol MessageFramer: Sendable {
    /// The bytes that carry `message` on the stream.
    func frame(_ message: UnsafeRawBufferPointer, context: MessageContext) throws(TransportError) -> [UInt8]
    /// Removes and returns the next whole message at the front of `buffer`, or nil when more bytes
    /// are needed. Throws when the bytes cannot be a valid frame.
    func parse(_ buffer: inout FramerBuffer) throws(TransportError) -> [UInt8]?
    /// The largest message the framer accepts, if it has a limit.
    var messageSizeLimit: Int? { get }
}

extension MessageFramer {
    /// No limit beyond the stack's own.
    public var messageSizeLimit: Int? { nil }
}

/// Bytes received and not yet parsed into messages.
public struct FramerBuffer: Sendable {
    private var storage: [UInt8] = []
    private var start = 0

    /// An empty buffer.
    public init() {}

    /// Bytes held and not yet consumed.
    public var count: Int { storage.count - start }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start >= storage.count / 2 {
            storage.removeFirst(start)
            start = 0
        }
        storage.append(contentsOf: bytes)
    }

    /// Reads `length` bytes at `offset` from the front without consuming them.
    public func peek(offset: Int = 0, length: Int) -> ArraySlice<UInt8>? {
        guard count >= offset + length else { return nil }
        return storage[(start + offset)..<(start + offset + length)]
    }

    /// Removes `length` bytes after skipping `skip`, and returns them.
    public mutating func consume(skip: Int = 0, length: Int) -> [UInt8] {
        let from = start + skip
        let bytes = Array(storage[from..<(from + length)])
        start = from + length
        if start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        }
        return bytes
    }
}

/// Each message is preceded by its length as a 4-byte big-endian integer.
public struct LengthPrefixFramer: MessageFramer {
    /// Messages larger than this are refused on send and treated as a framing error on receive.
    public var maximumMessageSize: Int

    /// `maximumMessageSize`.
    public var messageSizeLimit: Int? { maximumMessageSize }

    /// A framer refusing messages over `maximumMessageSize` (16 MB by default).
    public init(maximumMessageSize: Int = 16 * 1024 * 1024) {
        self.maximumMessageSize = maximumMessageSize
    }

    /// The message behind its 4-byte big-endian length.
    public func frame(_ message: UnsafeRawBufferPointer, context: MessageContext) throws(TransportError) -> [UInt8] {
        guard message.count <= maximumMessageSize else {
            throw .messageTooLarge("\(message.count) bytes exceed the framer's limit of \(maximumMessageSize)")
        }
        let length = UInt32(message.count)
        var framed = [UInt8](repeating: 0, count: 4 + message.count)
        framed.withUnsafeMutableBytes { out in
            out.storeBytes(of: length.bigEndian, as: UInt32.self)
            if message.count > 0 { UnsafeMutableRawBufferPointer(rebasing: out[4...]).copyMemory(from: message) }
        }
        return framed
    }

    /// The next whole message in `buffer`, or nil until all of it has arrived.
    public func parse(_ buffer: inout FramerBuffer) throws(TransportError) -> [UInt8]? {
        guard let header = buffer.peek(length: 4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length <= maximumMessageSize else {
            throw .protocolViolation("a framed message claims \(length) bytes, more than the limit of \(maximumMessageSize)")
        }
        guard buffer.count >= 4 + length else { return nil }
        return buffer.consume(skip: 4, length: length)
    }
}
