/// The service a layer gives the one above it. A recipe stacks a layer only on a service it can use
/// (`ProtocolStack.LayerKind.canStand(on:)`): TLS on a byte stream or on one SCTP stream's ordered
/// messages (RFC 3436), DTLS only on datagrams.
enum LayerService: Sendable, Hashable {
    /// A reliable, ordered byte stream without message boundaries (TCP, TLS).
    case byteStream
    /// Reliable, ordered messages that keep their boundaries, with per-message options (one SCTP
    /// stream: unordered or partially reliable messages on request).
    case orderedMessages
    /// Unreliable datagrams that keep their boundaries (UDP, DTLS).
    case datagrams

    /// Each write arrives as one read at the peer.
    var keepsMessageBoundaries: Bool { self != .byteStream }
}
