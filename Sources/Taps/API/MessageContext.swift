/// Per-message properties (RFC 9622 section 9.1.3).
public struct MessageProperties: Sendable, Hashable {
    /// 9.1.3.1: how long the message may wait before it is no longer worth sending (nil: forever).
    public var lifetime: Duration? = nil
    /// 9.1.3.2: priority relative to other messages on the connection (lower is more important).
    public var priority: Int = 100
    /// 9.1.3.3: deliver in order relative to other ordered messages.
    public var ordered: Bool = true
    /// 9.1.3.4: may be delivered more than once (0-RTT).
    public var safelyReplayable: Bool = false
    /// 9.1.3.5: the last message the application will send; the send side closes after it.
    public var final: Bool = false
    /// 9.1.3.6: minimum checksum coverage (nil: full).
    public var checksumLength: Int? = nil
    /// 9.1.3.7: reliable delivery for this message.
    public var reliable: Bool = true
    /// 9.1.3.9: must not be fragmented at the network layer.
    public var noFragmentation: Bool = false
    /// 9.1.3.10: must be sent in one transport segment.
    public var noSegmentation: Bool = false
    /// SCTP: the payload protocol identifier sent with the message (RFC 9260 section 3.3.1); on
    /// receive, the one it arrived with.
    public var sctpPayloadProtocolIdentifier: UInt32? = nil

    /// The defaults of RFC 9622 section 9.1.3: reliable, ordered, priority 100, no lifetime.
    public init() {}

    /// The default properties, as `init()` makes them.
    public static let `default` = MessageProperties()

    /// The default properties with `final` set: the message ends the sending side.
    public static var final: MessageProperties {
        var properties = MessageProperties()
        properties.final = true
        return properties
    }
}

/// The context a message is sent or received with (RFC 9622 section 9.1.1): its properties, and on
/// receive the endpoints it travelled between.
public struct MessageContext: Sendable, Hashable {
    /// The message's properties: as given to `send`, or as the message arrived.
    public var properties: MessageProperties
    /// On receive: the local address the message arrived at (useful on listening UDP sockets).
    public internal(set) var localEndpoint: SocketAddress?
    /// On receive: the address the message came from.
    public internal(set) var remoteEndpoint: SocketAddress?
    /// Identifies a sent message in `sent`, `expired` and `sendError` events.
    public internal(set) var messageID: UInt64 = 0

    /// A context with `properties`, for sending.
    public init(properties: MessageProperties = .default) {
        self.properties = properties
    }
}

/// A received message, or a part of one (RFC 9622 section 9.3).
public struct Message: Sendable {
    /// The message's bytes.
    public var content: [UInt8]
    /// The context the message arrived with.
    public var context: MessageContext
    /// False for a `receivedPartial` part; true when this is (the last part of) a whole message.
    public var isComplete: Bool
    /// True for a part of a message delivered in parts (a `receivedPartial` event), including the
    /// last part, which also has `isComplete` (RFC 9622's endOfMessage).
    public internal(set) var isPart: Bool
    /// True when this is the peer's final message (the stream ended after it).
    public var isFinal: Bool { context.properties.final }

    /// A message of `content`; `isComplete` false makes it a part of a larger message.
    public init(_ content: [UInt8], context: MessageContext = MessageContext(), isComplete: Bool = true) {
        self.content = content
        self.context = context
        self.isComplete = isComplete
        isPart = !isComplete
    }

    /// The content as UTF-8 text.
    public var text: String { String(decoding: content, as: UTF8.self) }
}
