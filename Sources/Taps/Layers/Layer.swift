/// Callbacks from a layer to the one above it. Loop thread only.
protocol LayerDelegate: AnyObject {
    /// Establishment finished (connect, handshake); data may flow.
    func layerDidBecomeReady()
    /// Bytes arrived: a chunk of a byte stream, or one whole datagram on a datagram layer. The
    /// buffer is borrowed for the duration of the call.
    func layerDidRead(_ bytes: UnsafeRawBufferPointer)
    /// Bytes arrived in an array the receiver may keep (layers that produce fresh buffers, such
    /// as TLS decrypting straight into one, hand them up without another copy).
    func layerDidRead(owned bytes: [UInt8])
    /// The peer finished sending (FIN, or TLS close_notify).
    func layerDidReadEndOfStream()
    /// The layer failed; it is unusable afterwards.
    func layerDidFail(_ error: TransportError)
    /// The path reported a problem the connection survives (ICMP errors on UDP).
    func layerDidReportSoftError(_ error: TransportError)
    /// The security protocol's traffic keys changed (`byPeer`: the peer sent a KeyUpdate).
    func layerDidUpdateKeys(byPeer: Bool)
    /// A message with the properties it arrived with (SCTP: ordered, PPID): whole, or, when the
    /// connection asked for partial delivery, one part of it (`isComplete` on its last part).
    func layerDidRead(message: [UInt8], properties: MessageProperties, isComplete: Bool)
    /// The path under the connection changed (SCTP peer address change).
    func layerDidChangePath()
}

extension LayerDelegate {
    func layerDidReportSoftError(_ error: TransportError) {}
    func layerDidUpdateKeys(byPeer: Bool) {}
    func layerDidChangePath() {}
    func layerDidRead(message: [UInt8], properties: MessageProperties, isComplete: Bool) { layerDidRead(owned: message) }

    func layerDidRead(owned bytes: [UInt8]) {
        bytes.withUnsafeBytes { layerDidRead($0) }
    }
}

/// One layer of a protocol stack bound to one connection: it carries bytes between the layer above
/// and the one below (or the socket). Loop thread only; every layer is confined to its loop.
protocol Layer: AnyObject {
    var delegate: LayerDelegate? { get set }
    /// The layer this one runs over (nil for a bottom layer). What a layer does not handle itself
    /// (group abort, priority, opening a sibling stream) goes on to it.
    var lowerLayer: Layer? { get }
    /// What this layer gives the one above: a byte stream, ordered messages or datagrams.
    var service: LayerService { get }
    /// Begins establishment (an active open, or a server-side handshake on an accepted socket).
    func start()
    /// Sends bytes; `completion` runs when the bytes left this process (possibly before `write`
    /// returns). The buffer is borrowed for the duration of the call.
    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?)
    /// Sends an array the layer may keep instead of copying (the send path's common case).
    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?)
    /// Gracefully ends the send side (TLS close_notify, then TCP FIN).
    func finishWriting(completion: @escaping (TransportError?) -> Void)
    /// Flow control: stop or resume delivering reads.
    func setReading(_ enabled: Bool)
    /// Tears down at once without a graceful close (TCP RST, no close_notify).
    func abort()
    /// Tears down this layer and what it shares with its siblings (an SCTP association: ABORT).
    func abortGroup()
    /// Releases the layer after a graceful close (or when never started).
    func close()
    var localAddress: SocketAddress? { get }
    var remoteAddress: SocketAddress? { get }
    /// What the security handshake negotiated, once ready; nil on layers without security.
    var securityDetails: SecurityDetails? { get }
    /// The largest message one `write` carries intact (datagram layers); nil when unbounded.
    var maximumMessageSize: Int? { get }
    /// The most bytes of a message one packet carries before the layer splits it over several
    /// (SCTP's fragmentation point, once established); nil on layers that do not fragment messages.
    var messageFragmentSize: Int? { get }
    /// Exports keying material from the security session (SSKE).
    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8]
    /// Updates the traffic keys (KU).
    func updateKeys(requestPeerUpdate: Bool) throws(TransportError)
    /// The resumable session, encoded (CM).
    func exportSession() throws(TransportError) -> [UInt8]?
    /// Sends one message with its properties (layers that map them, such as SCTP streams).
    func write(_ array: [UInt8], properties: MessageProperties, completion: ((TransportError?) -> Void)?)
    /// A new transport-level layer in the same association for a clone (the next SCTP stream); nil
    /// when a clone needs a connection of its own. The recipe puts the layers above on it.
    func openSibling() throws(TransportError) -> Layer?
    /// The connection's priority among its group (connPriority; lower is more important), for layers
    /// that schedule several connections over one association (SCTP streams).
    func setPriority(_ priority: Int)
    /// Why a message with these properties cannot be sent on this layer (nil: it can). The
    /// connection reports it as a `sendError` before anything is written.
    func refusal(for properties: MessageProperties) -> TransportError?
    /// Message layers: hand a large message up in parts of at least `minimumLength` bytes as it
    /// arrives (nil: whole messages only), for RFC 9622's minIncompleteLength.
    func setPartialDelivery(minimumLength: Int?)
}

extension Layer {
    var lowerLayer: Layer? { nil }
    var securityDetails: SecurityDetails? { nil }
    var maximumMessageSize: Int? { nil }
    var messageFragmentSize: Int? { nil }

    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        throw .notSupported("this stack has no security protocol to export keying material from")
    }

    func updateKeys(requestPeerUpdate: Bool) throws(TransportError) {
        throw .notSupported("this stack has no security protocol whose keys could be updated")
    }

    func exportSession() throws(TransportError) -> [UInt8]? {
        throw .notSupported("this stack has no security protocol with sessions to export")
    }

    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?) {
        array.withUnsafeBytes { write($0, completion: completion) }
    }

    func write(_ array: [UInt8], properties: MessageProperties, completion: ((TransportError?) -> Void)?) {
        write(array, completion: completion)
    }

    // Group operations belong to the layer that holds the association; the layers above pass
    // them down.

    func openSibling() throws(TransportError) -> Layer? { try lowerLayer?.openSibling() }

    func setPriority(_ priority: Int) { lowerLayer?.setPriority(priority) }

    func abortGroup() {
        if let lowerLayer { lowerLayer.abortGroup() } else { abort() }
    }

    /// The layers from this one down to the bottom.
    var layerChain: [Layer] {
        var chain: [Layer] = [self]
        while let next = chain.last?.lowerLayer { chain.append(next) }
        return chain
    }

    func setPartialDelivery(minimumLength: Int?) {}

    func refusal(for properties: MessageProperties) -> TransportError? { nil }
}

/// The outcome of a security handshake, readable on an established connection.
public struct SecurityDetails: Sendable, Hashable {
    /// The negotiated version, as OpenSSL names it (`TLSv1.3`, `DTLSv1.2`).
    public let protocolVersion: String
    /// The negotiated cipher suite (IANA name for TLS 1.3).
    public let cipherSuite: String
    /// The key-exchange group, e.g. "X25519" (nil when none was used, e.g. TLS 1.2 RSA key exchange).
    public let group: String?
    /// The ALPN protocol both ends agreed on, if any.
    public let applicationProtocol: String?
    /// The host name the client sent in SNI (on both ends), if any.
    public let serverName: String?
    /// The peer's leaf certificate subject, one line, when it sent a certificate.
    public let peerCertificateSubject: String?
    /// Whether the handshake resumed an earlier session.
    public let resumed: Bool
}
