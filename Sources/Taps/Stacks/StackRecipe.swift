/// Everything needed to build one stack's layers for a connection: the stack, the properties and
/// the security context made for it. Built once per Preconnection (per Listener) and shared by the
/// connections of a group. A class, so that each group and listener holds a reference rather than
/// a copy of its near kilobyte.
final class StackRecipe: Sendable {
    let stack: ProtocolStack
    let properties: TransportProperties
    /// The TLS or DTLS context, for stacks with a security layer.
    let tlsContext: TLSContext?
    let serverName: String?
    let local: SocketAddress?
    /// Where its connections, handshakes and packets are counted.
    let metrics: StackMetrics
    /// Testing: faults on the datagram path (client side).
    let lossyPath: LossyPath?
    /// Stacks with the DTLS chunk: its policy and keys.
    let dtlsChunk: DTLSChunkSettings?
    /// SCTP stacks: the packet capture, if asked for.
    let capture: SCTPCapture?

    init(stack: ProtocolStack, properties: TransportProperties, tlsContext: TLSContext?, serverName: String?,
         local: SocketAddress?, metrics: StackMetrics, lossyPath: LossyPath? = nil, dtlsChunk: DTLSChunkSettings? = nil,
         capture: SCTPCapture? = nil) {
        self.stack = stack
        self.properties = properties
        self.tlsContext = tlsContext
        self.serverName = serverName
        self.local = local
        self.metrics = metrics
        self.lossyPath = lossyPath
        self.dtlsChunk = dtlsChunk
        self.capture = capture
    }

    /// The association's options; with the DTLS chunk usrsctp gets a smaller MTU, so protected
    /// packets fit the path.
    var sctpOptions: SCTPOptions {
        var options = properties.sctpWithConnectionProperties
        if dtlsChunk != nil { options.pathMTU = DTLSChunkPathFilter.plainPathMTU(forWireMTU: options.pathMTU) }
        return options
    }

    var tcpOptions: TCPLayer.TCPOptions {
        var options = TCPLayer.TCPOptions()
        if stack.layers.contains(.tls) {
            options.readBufferSize = UVTCPSocket.largeReadBufferSize
            options.readsIntoArrays = false
        }
        if properties.keepAlive == .require || properties.keepAlive == .prefer {
            let seconds = properties.keepAliveTimeout.map { max(1, UInt32($0.components.seconds)) } ?? 60
            options.keepAliveSeconds = seconds
        }
        if let timeout = properties.connTimeout {
            options.userTimeoutMilliseconds = UInt32(clamping: timeout.milliseconds)
        }
        return options
    }

    /// The client-side layers, bottom-up, to reach `remote`. Loop thread only.
    func makeClientLayer(loop: EventLoop, remote: SocketAddress) throws(TransportError) -> Layer {
        var layer: Layer
        switch stack.layers.first {
        case .tcp: layer = TCPLayer(loop: loop, connectingTo: remote, options: tcpOptions)
        case .udp where stack.layers.contains(.sctp):
            // RFC 6951: the UDP port may differ from the SCTP port (the endpoint's).
            let sctp = properties.sctp
            // A restart comes from the port of the association it restarts, unless one is given.
            let restartPort = (local?.port ?? 0) == 0 ? dtlsChunk?.restartContext?.localPort : nil
            let localUDP = (sctp.localUDPPort ?? restartPort).map { port in
                local?.withPort(port) ?? SocketAddress(ip: remote.family == .ipv6 ? "::" : "0.0.0.0", port: port)!
            } ?? local
            layer = try UDPLayer(loop: loop, local: localUDP, peer: remote.withPort(sctp.remoteUDPPort ?? remote.port))
        case .udp: layer = try UDPLayer(loop: loop, local: local, peer: remote)
        default: throw .notSupported("stack \(stack.name) has no transport layer")
        }
        if let lossyPath, layer.service == .datagrams { layer = LossyLayer(over: layer, faults: lossyPath, loop: loop) }
        return try addLayers(above: 0, over: layer, remote: remote, loop: loop)
    }

    /// The server-side layers above a layer a listener accepted: a transport layer, or a stream of an
    /// accepted association (`baseKind` says which layer of the stack `base` is). A DTLS server's
    /// engine comes from the listener's cookie check, which already accepted the ClientHello. Loop
    /// thread only.
    func makeServerLayer(over base: Layer, baseKind: ProtocolStack.LayerKind, loop: EventLoop,
                         acceptedEngine: TLSEngine? = nil) throws(TransportError) -> Layer {
        guard let index = stack.layers.firstIndex(of: baseKind) else {
            throw .invalidArgument("stack \(stack.name) has no \(baseKind.rawValue) layer")
        }
        return try addLayers(above: index, over: base, remote: nil, loop: loop, acceptedEngine: acceptedEngine)
    }

    /// The layers of a clone of `original` (RFC 9622 section 7.4): on a stack with streams, the next
    /// stream of the same association with the stack's layers above it (`secured: false` leaves out
    /// the security layer: plain SCTP user data on a stream of a TLS/SCTP association, RFC 3436
    /// section 4.3.1); nil when the clone needs a connection of its own. Loop thread only.
    func makeCloneLayer(of original: Layer, remote: SocketAddress?, loop: EventLoop, secured: Bool = true) throws(TransportError) -> Layer? {
        guard let index = stack.layers.firstIndex(where: \.opensStreams) else { return nil }
        let above = stack.layers[(index + 1)...]
        if remote == nil && secured && above.contains(.tls) {
            // The TLS client starts each stream's handshake (RFC 3436 section 4.2); a listener's side
            // is the TLS server and waits for ClientHellos on the streams the client opens.
            throw .notSupported("on \(stack.name) the initiating side opens streams; a connection accepted by a listener cannot clone a TLS stream")
        }
        guard let sibling = try original.openSibling() else { return nil }
        let sessions = original.layerChain.lazy.compactMap { ($0 as? TLSLayer)?.streamSessions }.first
        let layers = secured ? Array(above) : above.filter { $0.security == nil }
        do {
            return try addLayers(layers, over: sibling, remote: remote, loop: loop, streamSessions: sessions)
        } catch {
            sibling.close()  // the stream leaves the association, which may then close when the others do
            throw error
        }
    }

    /// Puts the stack's layers after `index` on `base`, bottom-up. A client passes the `remote` it
    /// connects to; a server passes nil.
    private func addLayers(above index: Int, over base: Layer, remote: SocketAddress?, loop: EventLoop,
                           acceptedEngine: TLSEngine? = nil) throws(TransportError) -> Layer {
        try addLayers(Array(stack.layers[(index + 1)...]), over: base, remote: remote, loop: loop, acceptedEngine: acceptedEngine)
    }

    /// `streamSessions`: a clone's TLS/SCTP stream shares the association's sessions.
    private func addLayers(_ kinds: [ProtocolStack.LayerKind], over base: Layer, remote: SocketAddress?, loop: EventLoop,
                           acceptedEngine: TLSEngine? = nil, streamSessions: TLSStreamSessions? = nil) throws(TransportError) -> Layer {
        var layer = base
        var chunkFilter: DTLSChunkPathFilter?
        for kind in kinds {
            guard kind.canStand(on: layer.service) else {
                throw .notSupported("\(kind.rawValue) cannot run over a layer that gives \(layer.service)")
            }
            switch kind {
            case .sctp:
                guard let remote else { throw .invalidArgument("an SCTP association is opened by a client or accepted by a listener") }
                layer = try addSCTP(over: layer, remote: remote, loop: loop, chunkFilter: chunkFilter)
            case .dtlsChunk:
                // Not a layer of its own: a filter in the SCTP path above it.
                guard let dtlsChunk else { throw .invalidArgument("stack \(stack.name) needs the DTLS chunk's settings") }
                chunkFilter = dtlsChunk.makeFilter(side: .initiator)
            case .dtls where acceptedEngine != nil:
                let security = TLSLayer(over: layer, engine: acceptedEngine!, loop: loop)
                security.metrics = metrics
                layer = security
            case .tls, .dtls:
                layer = try addSecurity(over: layer, remote: remote, loop: loop, streamSessions: streamSessions)
            case .tcp, .udp:
                throw .notSupported("layer \(kind.rawValue) cannot be placed above another layer")
            }
        }
        return layer
    }

    /// A client association over the datagram layer; the connection is its first stream.
    private func addSCTP(over lower: Layer, remote: SocketAddress, loop: EventLoop, chunkFilter: DTLSChunkPathFilter?) throws(TransportError) -> Layer {
        try SCTPRuntime.shared.requireLoop(loop)
        let path = SCTPPath(over: lower)
        path.chunkFilter = chunkFilter
        path.capture = capture.map { SCTPPathCapture($0, lower: lower) }
        path.metrics = metrics
        let localPort = lower.localAddress?.port ?? 0
        let association = SCTPAssociation(path: path, role: .client(localPort: localPort, remotePort: remote.port),
                                          options: sctpOptions, loop: loop)
        return try association.openStream()
    }

    /// TLS or DTLS over `lower`. Over one SCTP stream (RFC 3436) every record is its own message, the
    /// stream must be bidirectional, and a client's streams share the association's sessions:
    /// `streamSessions` for a clone, new ones for the first stream.
    private func addSecurity(over lower: Layer, remote: SocketAddress?, loop: EventLoop,
                             streamSessions: TLSStreamSessions?) throws(TransportError) -> Layer {
        guard let tlsContext else { throw .invalidArgument("stack \(stack.name) needs a security context") }
        let key = remote.map { "\(serverName ?? $0.ipAddress):\($0.port)" }
        let sessionKey = properties.isolateSession ? nil : key
        let overStream = lower.service == .orderedMessages
        if overStream, let stream = lower as? SCTPStreamLayer, !stream.isBidirectional {
            throw .protocolViolation("SCTP stream \(stream.streamID) has no stream back: TLS runs on bidirectional streams only (RFC 3436 section 4.4)")
        }
        let engine = try TLSEngine(context: tlsContext, serverName: serverName, peerAddress: remote, sessionKey: sessionKey,
                                   recordPerWrite: overStream, offersCachedSession: !overStream, sealsApplicationRecords: overStream)
        if remote == nil, let stream = lower as? SCTPStreamLayer { engine.ticketScope = stream.association.sessionScope }
        let layer: TLSLayer
        if overStream, remote != nil {
            let pattern = properties.sctp.tlsHandshakes
            let sessions = streamSessions ?? TLSStreamSessions(pattern: pattern, earlier: sessionKey.flatMap(tlsContext.session(for:)))
            layer = TLSLayer(over: lower, engine: engine, loop: loop, streamSessions: sessions,
                             deferredUntilFirstWrite: streamSessions != nil && pattern == .delayed)
        } else {
            layer = TLSLayer(over: lower, engine: engine, loop: loop)
        }
        layer.metrics = metrics
        return layer
    }
}
