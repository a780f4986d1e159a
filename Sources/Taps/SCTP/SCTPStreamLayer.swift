/// One bidirectional SCTP stream of an association, as the layer a Connection sits on. Writes are
/// whole messages with their properties; reads are whole messages, or parts of large ones when the
/// connection asked for partial delivery. Loop thread only.
final class SCTPStreamLayer: Layer {
    weak var delegate: LayerDelegate?
    let association: SCTPAssociation
    let streamID: UInt16
    private var started = false
    private var readyReported = false
    private var ended = false
    private var closed = false

    init(association: SCTPAssociation, streamID: UInt16) {
        self.association = association
        self.streamID = streamID
    }

    var service: LayerService { .orderedMessages }
    /// The association's datagram layer, which every stream of it shares. Group operations stop
    /// here: this layer implements them on the association.
    var lowerLayer: Layer? { association.path.lower }
    var localAddress: SocketAddress? { association.path.lower.localAddress }
    /// The DTLS chunk's protection of the association, when it has one.
    var securityDetails: SecurityDetails? { association.path.chunkFilter?.securityDetails }

    /// With the DTLS chunk, PPID 4242 belongs to key management.
    func refusal(for properties: MessageProperties) -> TransportError? {
        guard association.path.chunkFilter != nil, properties.sctpPayloadProtocolIdentifier == DTLSChunkPathFilter.keyManagementPPID else { return nil }
        return .invalidArgument("PPID 4242 carries DTLS key management messages on \(ProtocolStack.dtlsChunkSCTP.name); applications use another")
    }
    var remoteAddress: SocketAddress? { association.path.lower.remoteAddress }
    var messageFragmentSize: Int? { association.fragmentationPoint }

    /// The stream has a partner of the same id in the other direction (RFC 3436 section 3.1): its
    /// id is below both stream counts the association negotiated (known once it is up).
    var isBidirectional: Bool {
        association.outboundStreams == 0 || streamID < min(association.outboundStreams, association.inboundStreams)
    }

    func start() {
        started = true
        association.streamStarted(self)
    }

    // MARK: From the association

    func associationDidBecomeReady() {
        guard started, !readyReported else { return }
        readyReported = true
        delegate?.layerDidBecomeReady()
    }

    func deliver(_ message: [UInt8], properties: MessageProperties, isComplete: Bool) {
        guard !ended else { return }
        delegate?.layerDidRead(message: message, properties: properties, isComplete: isComplete)
    }

    /// Set by the connection (RFC 9622 minIncompleteLength): large messages go up in parts.
    private(set) var partialDeliveryMinimum: Int?

    /// Takes effect from the next piece usrsctp hands over.
    func setPartialDelivery(minimumLength: Int?) {
        partialDeliveryMinimum = minimumLength
    }

    /// The peer reset this stream or shut the association down: no more messages arrive.
    func peerFinished() {
        guard !ended else { return }
        ended = true
        delegate?.layerDidReadEndOfStream()
    }

    func associationDidUpdateKeys(byPeer: Bool) {
        delegate?.layerDidUpdateKeys(byPeer: byPeer)
    }

    /// KU: the DTLS chunk's keys are the association's, so any of its connections may renew them.
    func updateKeys(requestPeerUpdate: Bool) throws(TransportError) {
        try association.updateKeys()
    }

    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        try association.exportKeyingMaterial(label: label, context: context, length: length)
    }

    func exportSession() throws(TransportError) -> [UInt8]? {
        try association.exportSession()
    }

    func associationDidFail(_ error: TransportError) {
        delegate?.layerDidFail(error)
    }

    func associationDidClose() {
        peerFinished()
    }

    // MARK: From the connection

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        association.send(Array(bytes), on: streamID, properties: .default, completion: completion)
    }

    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?) {
        association.send(array, on: streamID, properties: .default, completion: completion)
    }

    func write(_ array: [UInt8], properties: MessageProperties, completion: ((TransportError?) -> Void)?) {
        association.send(array, on: streamID, properties: properties, completion: completion)
    }

    func finishWriting(completion: @escaping (TransportError?) -> Void) {
        association.finishStream(streamID, completion: completion)
    }

    func setReading(_ enabled: Bool) { association.setReading(enabled, on: streamID) }

    /// RFC 9623 section 5.3: the association's last connection sends ABORT; otherwise only this
    /// stream ends (its queued messages dropped, then reset), and the others carry on.
    func abort() {
        guard !closed else { return }
        closed = true
        association.abortStream(streamID)
    }

    /// AbortGroup: ABORT for the whole association.
    func abortGroup() {
        closed = true
        association.abort()
    }

    func close() {
        guard !closed else { return }
        closed = true
        association.streamClosed(streamID)
    }

    func setPriority(_ priority: Int) { association.setPriority(priority, on: streamID) }

    /// A clone is the next stream of the same association (RFC 9622 section 7.4).
    func openSibling() throws(TransportError) -> Layer? {
        try association.openStream()
    }
}
