/// A passive open (RFC 9622 section 7.2): incoming connections as an AsyncSequence.
///
/// A connection is delivered once it is established, i.e. after its security handshake; failed
/// handshakes are counted in `failedEstablishments` and never reach the application.
public actor Listener {
    /// The event loop the listener accepts on.
    public nonisolated let loop: EventLoop
    /// The protocol stack selection chose for the listener.
    public nonisolated let stack: ProtocolStack
    /// The bound address (with the actual port when port 0 was asked for).
    public nonisolated let localAddress: SocketAddress
    /// Established incoming connections, until `stop()`.
    public nonisolated let connections: AsyncStream<Connection>
    private let continuation: AsyncStream<Connection>.Continuation

    private let recipe: StackRecipe
    private let framer: (any MessageFramer)?
    /// TCP: the loops accepted connections are handed to in turn (the listener's own among them),
    /// so their handshakes and traffic spread over the cores.
    private let acceptLoops: [EventLoop]
    private var nextAcceptLoop = 0
    private var tcpListener: UVTCPListener?
    private var udpSocket: UVUDPSocket?
    private var udpPeers: [SocketAddress: UDPLayer] = [:]
    /// SCTP: the listening association endpoint behind the UDP socket.
    private var sctpAcceptor: SCTPAcceptor?
    private var remainingConnections: Int?
    private var stopped = false
    /// Incoming attempts that failed establishment (bad handshake, reset) and were dropped, and on
    /// tcp and tls-tcp the connections reset because the process was out of file descriptors.
    public private(set) var failedEstablishments = 0
    /// Incoming attempts refused because the new-connection limit was reached.
    public private(set) var refusedByLimit = 0
    /// Why the most recent failed establishment failed.
    public private(set) var lastEstablishmentError: TransportError?
    /// DTLS: HelloVerifyRequests sent to peers whose ClientHello had no valid cookie yet.
    public private(set) var helloVerifyRequestsSent = 0
    /// Datagram listeners: peers the listener keeps state for (on DTLS, only those that proved
    /// their address with a cookie).
    public var peersWithState: Int { udpPeers.count }
    /// DTLS: a server engine that only runs the stateless cookie check for new peers; the one that
    /// accepts a valid cookie becomes that peer's connection.
    private var cookieGate: TLSEngine?

    /// The listener's loop, as the actor's executor.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Binds and starts listening; on the loop thread.
    init(loop: EventLoop, recipe: StackRecipe, address: SocketAddress, framer: (any MessageFramer)?,
         newConnectionLimit: Int?, acceptLoops: [EventLoop] = []) throws(TransportError) {
        self.loop = loop
        self.acceptLoops = acceptLoops.isEmpty ? [loop] : acceptLoops
        self.recipe = recipe
        self.stack = recipe.stack
        self.framer = framer
        remainingConnections = newConnectionLimit
        (connections, continuation) = AsyncStream<Connection>.makeStream()
        // Callbacks can arrive only after init, when the relay points at the listener.
        let relay = Relay()
        switch recipe.stack.layers.first {
        case .tcp:
            // Callbacks run on the loop thread, this actor's executor.
            let listener = try UVTCPListener(loop: loop, address: address, onConnection: { connection in
                relay.listener?.assumeIsolated { $0.accepted(connection) }
            }, onDropped: { error in
                relay.listener?.assumeIsolated { $0.recordFailure(error) }
            })
            localAddress = listener.localAddress
            tcpListener = listener
        case .udp:
            let socket = UVUDPSocket(loop: loop)
            let sctp = recipe.stack.layers.contains(.sctp)
            do throws(TransportError) {
                // SCTP: the UDP encapsulation port may differ from the SCTP port (RFC 6951).
                try socket.bind(sctp ? address.withPort(recipe.properties.sctp.localUDPPort ?? address.port) : address)
                guard let bound = socket.localAddress else { throw TransportError.io("listener has no local address") }
                localAddress = sctp && address.port != 0 ? bound.withPort(address.port) : bound
                // Every peer's datagrams arrive on this one socket: the default buffer drops some
                // when many peers send at once (200 DTLS handshakes overflowed it).
                socket.setBufferSizes(send: 4 << 20, receive: 4 << 20)
                if sctp {
                    try SCTPRuntime.shared.requireLoop(loop)
                    sctpAcceptor = try SCTPAcceptor(port: localAddress.port, options: recipe.sctpOptions, loop: loop)
                    sctpAcceptor?.dtlsChunk = recipe.dtlsChunk
                    sctpAcceptor?.capture = recipe.capture
                    sctpAcceptor?.metrics = recipe.metrics
                }
            } catch {
                socket.close()
                throw error
            }
            sctpAcceptor?.onAssociation = { association in
                nonisolated(unsafe) let association = association  // made on the loop, this actor's executor
                relay.listener?.assumeIsolated { $0.acceptedAssociation(association) }
            }
            socket.onDatagram = { bytes, sender in
                nonisolated(unsafe) let bytes = bytes  // borrowed for this call, on the loop thread
                relay.listener?.assumeIsolated { $0.datagram(bytes, from: sender) }
            }
            socket.startReceiving()
            udpSocket = socket
        default:
            throw .notSupported("stack \(recipe.stack.name) cannot listen")
        }
        relay.listener = self
    }

    /// Lets socket callbacks set up during init reach the listener once it exists.
    private final class Relay {
        weak var listener: Listener?
    }

    /// Changes how many more connections are accepted (nil: unlimited).
    public func setNewConnectionLimit(_ limit: Int?) { remainingConnections = limit }

    private func admit() -> Bool {
        guard !stopped else { return false }
        guard let remaining = remainingConnections else { return true }
        guard remaining > 0 else {
            refusedByLimit += 1
            return false
        }
        remainingConnections = remaining - 1
        return true
    }

    /// A TCP connection was accepted: it goes to the next of the accept loops, which polls its socket.
    private func accepted(_ connection: HandedOverTCPConnection) {
        guard admit() else { return connection.discard() }
        let target = acceptLoops[nextAcceptLoop % acceptLoops.count]
        nextAcceptLoop &+= 1
        let adopt: @Sendable () -> Void = { [weak self] in
            guard let self else { return connection.discard() }
            do throws(TransportError) {
                let socket = try connection.adopt(on: target, readBufferSize: self.recipe.tcpOptions.readBufferSize)
                self.establishAccepted(socket, on: target)
            } catch {
                self.onListenerLoop { $0.recordFailure(error) }
            }
        }
        if target === loop { adopt() } else { target.execute(adopt) }
    }

    /// Puts the stack's layers on an accepted TCP connection, on the loop that polls its socket.
    private nonisolated func establishAccepted(_ socket: UVTCPSocket, on loop: EventLoop) {
        do throws(TransportError) {
            let layer = try recipe.makeServerLayer(over: TCPLayer(accepted: socket, options: recipe.tcpOptions), baseKind: .tcp, loop: loop)
            establish(layer, on: loop)
        } catch {
            socket.close()
            onListenerLoop { $0.recordFailure(error) }
        }
    }

    /// Runs `body` isolated to the listener: at once on its loop, else queued there.
    private nonisolated func onListenerLoop(_ body: @escaping @Sendable (isolated Listener) -> Void) {
        if loop.inEventLoop {
            assumeIsolated(body)
        } else {
            loop.execute { self.assumeIsolated(body) }
        }
    }

    private func datagram(_ bytes: UnsafeRawBufferPointer, from sender: SocketAddress) {
        if let peer = udpPeers[sender] {
            if idleSweep != nil { peer.lastActivity = loop.nowMilliseconds }
            peer.deliver(bytes)
            return
        }
        if recipe.stack.layers.contains(.dtls) {
            dtlsDatagram(bytes, from: sender)
            return
        }
        if let sctpAcceptor, let udpSocket, !stopped {
            sctpAcceptor.deliver(bytes, from: sender) { addPeer($0, on: udpSocket) }
            return
        }
        guard let udpSocket, admit() else { return }
        let layer = addPeer(sender, on: udpSocket)
        establish(layer)
        layer.deliver(bytes)
    }

    /// A datagram from an unknown peer on a DTLS listener: only a ClientHello with a valid cookie
    /// creates state; anything else gets a HelloVerifyRequest or is dropped (RFC 6347 section 4.2.1).
    private func dtlsDatagram(_ bytes: UnsafeRawBufferPointer, from sender: SocketAddress) {
        guard !stopped, let udpSocket, let context = recipe.tlsContext else { return }
        let gate: TLSEngine
        if let cookieGate {
            gate = cookieGate
        } else {
            do throws(TransportError) {
                gate = try TLSEngine(context: context, serverName: nil, peerAddress: nil, sessionKey: nil)
            } catch {
                recordFailure(error)
                return
            }
        }
        guard gate.listen(bytes, from: sender) else {
            gate.drainOutbound { reply, _ in
                reply.withUnsafeBytes { udpSocket.send($0, to: sender) }
                helloVerifyRequestsSent += 1
            }
            cookieGate = gate
            return
        }
        cookieGate = nil
        guard admit() else { return }
        let peer = addPeer(sender, on: udpSocket)
        do throws(TransportError) {
            establish(try recipe.makeServerLayer(over: peer, baseKind: .udp, loop: loop, acceptedEngine: gate))
        } catch {
            udpPeers[sender] = nil
            recordFailure(error)
        }
    }

    /// A layer for one peer on the shared socket, routed to from `datagram` until it closes.
    private func addPeer(_ sender: SocketAddress, on socket: UVUDPSocket) -> UDPLayer {
        let peer = UDPLayer(sharing: socket, peer: sender) { [weak self] in
            self?.assumeIsolated { $0.peerClosed(sender) }
        }
        udpPeers[sender] = peer
        peer.lastActivity = loop.nowMilliseconds
        startIdleSweep()
        return peer
    }

    /// udp and dtls-udp: ends the connections of peers silent for `incomingDatagramIdleTimeout`, on
    /// a timer that runs while there are peers (SCTP paths have the association's own liveness).
    private var idleSweep: UVTimer?

    private func startIdleSweep() {
        guard idleSweep == nil, sctpAcceptor == nil, let timeout = recipe.properties.incomingDatagramIdleTimeout else { return }
        let limit = UInt64(max(1, timeout.milliseconds))
        let period = max(10, limit / 4)
        let sweep = UVTimer(loop: loop)
        idleSweep = sweep
        sweep.start(after: period, repeat: period) { [weak self] in
            self?.assumeIsolated { listener in
                let now = listener.loop.nowMilliseconds
                let idle = listener.udpPeers.values.filter { now &- $0.lastActivity >= limit }
                for peer in idle {
                    peer.expire(.timedOut("the peer sent nothing for \(timeout) (incomingDatagramIdleTimeout)"))
                }
                if listener.udpPeers.isEmpty { listener.stopIdleSweep() }
            }
        }
    }

    private func stopIdleSweep() {
        idleSweep?.close()
        idleSweep = nil
    }

    /// SCTP: an association came up; its stream 0 is a connection, and each stream the peer opens
    /// later becomes another connection in the same group. Every stream gets the stack's layers
    /// above SCTP (TLS on tls-sctp) before it reaches a Connection.
    private func acceptedAssociation(_ association: SCTPAssociation) {
        guard admit(), let first = association.firstStream else {
            association.abort()
            return
        }
        let group = ConnectionGroup(recipe: recipe, remote: nil, framer: framer, loop: loop)
        association.onIncomingStream = { [weak self] stream, firstBytes in
            nonisolated(unsafe) let stream = stream  // made on the loop, this actor's executor
            self?.assumeIsolated { $0.establishStream(stream, in: group, firstBytes: firstBytes) }
        }
        establishStream(first, in: group)
    }

    /// `firstBytes`: what arrived first on a stream the peer opened after the first one. With
    /// `sctp.plainStreams`, such a stream on a secured stack that does not begin with a TLS handshake
    /// record carries plain SCTP user data (RFC 3436 section 4.3.1) and becomes a connection of the
    /// stack without security.
    private func establishStream(_ stream: SCTPStreamLayer, in group: ConnectionGroup, firstBytes: [UInt8]? = nil) {
        do throws(TransportError) {
            if let firstBytes, recipe.properties.sctp.plainStreams, !Self.beginsTLSHandshake(firstBytes) {
                establish(stream, in: group, stack: recipe.stack.withoutSecurity)
            } else {
                establish(try recipe.makeServerLayer(over: stream, baseKind: .sctp, loop: loop), in: group)
            }
        } catch {
            stream.abort()
            recordFailure(error)
        }
    }

    /// A TLS handshake record's header: content type 22, then a 3.x legacy version (RFC 8446 section 5.1).
    private static func beginsTLSHandshake(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 22 && bytes[1] == 3
    }

    private func peerClosed(_ sender: SocketAddress) {
        sctpAcceptor?.peerClosed(sender)
        udpPeers[sender] = nil
        if udpPeers.isEmpty { stopIdleSweep() }
        if stopped && udpPeers.isEmpty { udpSocket?.close() }
    }

    /// Makes an incoming layer's connection on `loop`, the layer's (the listener's own unless an
    /// accepted TCP connection was handed over), and counts or delivers it, on the listener's loop,
    /// once it is established or has failed.
    private nonisolated func establish(_ layer: Layer, on loop: EventLoop? = nil, in existingGroup: ConnectionGroup? = nil,
                                       stack: ProtocolStack? = nil) {
        let loop = loop ?? self.loop
        nonisolated(unsafe) let layer = layer  // made on `loop`; the connection runs on it too
        let group = existingGroup ?? ConnectionGroup(recipe: recipe, remote: nil, framer: framer, loop: loop)
        let connection = Connection(loop: loop, stack: stack ?? self.stack, layer: layer, properties: recipe.properties,
                                    framer: framer, group: group, metrics: recipe.metrics.forStack((stack ?? self.stack).name))
        group.add(connection)
        // Only a handshake can stall; a plain transport's incoming connection is ready at once.
        let handshakes = (stack ?? self.stack).security != nil
        let limit = handshakes ? recipe.properties.incomingEstablishmentTimeout : nil
        let timeout = limit.map { duration in
            UVTimer.schedule(on: loop, after: UInt64(max(1, duration.milliseconds))) { [weak connection] in
                connection?.assumeIsolated {
                    $0.failEstablishment(.timedOut("the incoming connection did not complete its establishment within \(duration)"))
                }
            }
        }
        connection.assumeIsolated { connection in
            connection.start { [weak self] error in
                timeout?.close()
                self?.onListenerLoop { listener in
                    if let error { listener.recordFailure(error) } else { listener.continuation.yield(connection) }
                }
            }
        }
    }

    private func recordFailure(_ error: TransportError) {
        failedEstablishments += 1
        lastEstablishmentError = error
    }

    /// Stops accepting; established connections stay open. The `connections` sequence ends.
    ///
    /// On the UDP-based stacks the established connections share the listener's socket, so it keeps
    /// receiving for them (datagrams from new peers are dropped) and closes after the last one.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        tcpListener?.close()
        tcpListener = nil
        sctpAcceptor?.stop()
        if udpPeers.isEmpty { udpSocket?.close() }
        continuation.finish()
    }
}
