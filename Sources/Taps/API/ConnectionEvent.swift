/// The events of RFC 9622 sections 7, 8.3, 9.2.2, 9.3.2 and 10, delivered in order per connection.
public enum ConnectionEvent: Sendable {
    /// 7.1: the connection is established (after the security handshake, if any).
    case ready
    /// 7.1: establishment failed; no application data was sent.
    case establishmentError(TransportError)
    /// 10: the connection failed after it was established.
    case connectionError(TransportError)
    /// 10: the connection is closed (after a graceful close or an abort).
    case closed
    /// 9.2.2.1: a message was handed to the transport.
    case sent(MessageContext)
    /// 9.2.2.2: a message expired before it could be sent.
    case expired(MessageContext)
    /// 9.2.2.3: a message could not be sent.
    case sendError(MessageContext, TransportError)
    /// 9.3.2.1: a whole message arrived.
    case received(Message)
    /// 9.3.2.2: part of a message arrived (byte streams without a framer, or large messages).
    case receivedPartial(Message)
    /// 9.3.2.3: a message could not be received (e.g. a framer rejected the bytes).
    case receiveError(TransportError)
    /// 8.3.1: the path reported a soft error (e.g. ICMP); the connection continues.
    case softError(TransportError)
    /// 8.3.2: the connection's path changed.
    case pathChange
    /// 7.4: cloning the connection failed.
    case cloneError(TransportError)
    /// The security protocol's traffic keys were updated (RFC 8922 KU): by `updateKeys()`, or by
    /// the peer (`byPeer`), e.g. a TLS 1.3 KeyUpdate.
    case keysUpdated(byPeer: Bool)
}
