/// Everything needed to build one stack's layers for a connection: the stack, the properties and
/// the security context made for it. Built once per Preconnection (per Listener) and shared by the
/// connections of a group.
struct StackRecipe: Sendable {
    let stack: ProtocolStack
    let properties: TransportProperties
    /// The TLS or DTLS context, for stacks with a security layer.
    let tlsContext: TLSContext?
    let serverName: String?
    let local: SocketAddress?
    /// Testing: faults on the datagram path (client side).
    var lossyPath: LossyPath? = nil

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
            let localUDP = sctp.localUDPPort.map { port in
                local?.withPort(port) ?? SocketAddress(ip: remote.family == .ipv6 ? "::" : "0.0.0.0", port: port)!
            } ?? local
            layer = try UDPLayer(loop: loop, local: localUDP, peer: remote.withPort(sctp.remoteUDPPort ?? remote.port))
        case .udp: layer = try UDPLayer(loop: loop, local: local, peer: remote)
        default: throw .notSupported("stack \(stack.name) has no transport layer")
        }
        if let lossyPath, layer.service == .datagrams { layer = LossyLayer(over: layer, faults: lossyPath, loop: loop) }
        for kind in stack.layers.dropFirst() {
            layer = kind == .sctp ? try addSCTP(over: layer, remote: remote, loop: loop)
                                  : try addSecurity(kind, over: layer, remote: remote, loop: loop)
        }
        return layer
    }

    /// A client association over the datagram layer; the connection is its first stream.
    private func addSCTP(over lower: Layer, remote: SocketAddress, loop: EventLoop) throws(TransportError) -> Layer {
        try SCTPRuntime.shared.requireLoop(loop)
        let path = SCTPPath(over: lower)
        let localPort = lower.localAddress?.port ?? 0
        let association = SCTPAssociation(path: path, role: .client(localPort: localPort, remotePort: remote.port),
                                          options: properties.sctp, loop: loop)
        return try association.openStream()
    }

    /// The server-side layers above a transport layer a listener accepted. A DTLS server's engine
    /// comes from the listener's cookie check, which already accepted the ClientHello. Loop thread only.
    func makeServerLayer(over base: Layer, loop: EventLoop, acceptedEngine: TLSEngine? = nil) throws(TransportError) -> Layer {
        var layer = base
        for kind in stack.layers.dropFirst() {
            if let acceptedEngine, kind == .dtls {
                layer = TLSLayer(over: layer, engine: acceptedEngine, loop: loop)
            } else {
                layer = try addSecurity(kind, over: layer, remote: nil, loop: loop)
            }
        }
        return layer
    }

    private func addSecurity(_ kind: ProtocolStack.LayerKind, over lower: Layer, remote: SocketAddress?,
                             loop: EventLoop) throws(TransportError) -> Layer {
        switch kind {
        case .tls, .dtls:
            guard let tlsContext else { throw .invalidArgument("stack \(stack.name) needs a security context") }
            guard kind.canStand(on: lower.service) else {
                throw .notSupported("\(kind.rawValue) cannot run over a layer that gives \(lower.service)")
            }
            let key = remote.map { "\(serverName ?? $0.ipAddress):\($0.port)" }
            let engine = try TLSEngine(context: tlsContext, serverName: serverName, peerAddress: remote,
                                       sessionKey: properties.isolateSession ? nil : key)
            return TLSLayer(over: lower, engine: engine, loop: loop)
        default:
            throw .notSupported("layer \(kind.rawValue) cannot be placed above a transport layer")
        }
    }
}
