/// A Preconnection (RFC 9622 section 6): endpoints, properties and security parameters, from which
/// connections are initiated, listeners started or rendezvous made.
public struct Preconnection: Sendable {
    /// The local endpoint to bind (nil: any address, an ephemeral port); a listener's address.
    public var local: LocalEndpoint?
    /// The remote endpoint; `alternativeRemotes` adds more (RFC 9622 section 6.1 allows several),
    /// and racing tries the addresses of all of them.
    public var remote: RemoteEndpoint?
    /// More remote endpoints for the same peer, raced after `remote`.
    public var alternativeRemotes: [RemoteEndpoint] = []
    /// Selection and connection properties (RFC 9622 sections 6.2 and 8.1).
    public var transport: TransportProperties
    /// Security parameters (RFC 9622 section 6.3): identities, trust, versions, security interfaces.
    public var security: SecurityParameters
    /// A framer gives byte-stream stacks message boundaries (RFC 9622 section 9.1.2).
    public var framer: (any MessageFramer)?
    /// The protocol stacks selection chooses from; `.standard` holds every stack the SDK implements.
    public var registry: StackRegistry = .standard
    /// The loop to run on; nil picks the next loop of `eventLoopGroup`. A listener given a loop
    /// keeps everything it accepts on that loop.
    public var loop: EventLoop?
    /// The loops to spread over when `loop` is nil (nil: `EventLoopGroup.shared`): a connection
    /// takes the next one, and a tcp or tls-tcp listener hands each connection it accepts to the
    /// next one, where its handshake and traffic run. The SCTP stacks run on the SCTP loop
    /// (usrsctp's state is process-wide), and a UDP listener's connections share its socket and
    /// its loop.
    public var eventLoopGroup: EventLoopGroup?
    /// Testing: faults injected on the datagram path of UDP-based stacks (in both directions, on
    /// this end's side). Nil in production.
    public var lossyPath: LossyPath?
    /// Security contexts built for this preconnection (and its copies), by parameters and role:
    /// building an SSL_CTX and parsing trust roots costs more than a handshake, and sharing the
    /// context shares its session cache.
    private let contexts = TLSContextCache()
    /// The host's policy (`SystemPolicy`): the process's, read once. Tests set their own.
    var policy: Result<SystemPolicy?, TransportError> = SystemPolicy.processPolicy

    /// A preconnection with the given endpoints and properties. The default security parameters
    /// validate the peer's certificate against the system's trust roots.
    public init(local: LocalEndpoint? = nil, remote: RemoteEndpoint? = nil,
                transport: TransportProperties = TransportProperties(),
                security: SecurityParameters = .clientDefault,
                framer: (any MessageFramer)? = nil, loop: EventLoop? = nil) {
        self.local = local
        self.remote = remote
        self.transport = transport
        self.security = security
        self.framer = framer
        self.loop = loop
    }

    /// Which stacks qualify for `role`, in rank order, and why each other one does not.
    public func candidateStacks(for role: ProtocolStack.Role = .initiate) -> [CandidateReport] {
        selector(role).evaluate(registry)
    }

    private func selector(_ role: ProtocolStack.Role) -> StackSelector {
        StackSelector(properties: transport, security: security, hasFramer: framer != nil, role: role, policy: policy)
    }

    /// Builds the recipe for each selected stack, creating security contexts once (so bad
    /// credentials fail here, before any packet is sent).
    private func recipes(for role: ProtocolStack.Role) throws(TransportError) -> [StackRecipe] {
        // A malformed policy fails here, before anything else; a valid one has narrowed the
        // parameters the selector holds, which the contexts are built from.
        _ = try policy.get()
        let selector = selector(role)
        let security = selector.security
        let stacks = try selector.select(registry)
        let localAddress = try local.map { endpoint throws(TransportError) in try Self.localAddress(endpoint) }
        return try stacks.map { stack throws(TransportError) in
            var context: TLSContext?
            if stack.layers.contains(.tls) || stack.layers.contains(.dtls) {
                context = try contexts.context(for: security, role: role == .listen ? .server : .client,
                                               datagram: stack.layers.contains(.dtls))
            }
            let chunk = stack.layers.contains(.dtlsChunk)
            return StackRecipe(stack: stack, properties: transport, tlsContext: context,
                               serverName: security.serverName ?? remote?.hostName, local: localAddress,
                               metrics: .current(stack: stack.name), lossyPath: lossyPath,
                               dtlsChunk: chunk ? try contexts.dtlsChunkSettings(for: security) : nil,
                               capture: stack.layers.contains(.sctp) ? try SCTPCapture(transport.capture ?? .environment, plainToo: chunk) : nil)
        }
    }

    static func localAddress(_ endpoint: LocalEndpoint) throws(TransportError) -> SocketAddress {
        switch endpoint.host {
        case .address(let address): return address.withPort(endpoint.port)
        case .any: return SocketAddress(ip: "::", port: endpoint.port)!
        case .name(let name):
            guard name == "localhost" else { throw .invalidArgument("local endpoint \(name): use an IP address or .any") }
            return SocketAddress(ip: "127.0.0.1", port: endpoint.port)!
        }
    }

    /// SCTP associations all live on the SCTP runtime's loop (usrsctp is one instance per process),
    /// so a race led by an SCTP stack runs there; other races spread over the shared group and leave
    /// out the SCTP candidates further down, which cannot run there. Deciding by the first candidate
    /// keeps secure stream connections off that one loop, since tls-sctp qualifies for them too.
    /// The loops this preconnection spreads over when no `loop` is set.
    private var loopGroup: EventLoopGroup { eventLoopGroup ?? .shared }

    private func defaultLoop(for recipes: [StackRecipe]) -> EventLoop {
        recipes.first?.stack.layers.contains(.sctp) == true ? SCTPRuntime.shared.loop : loopGroup.next()
    }

    // MARK: Initiate (RFC 9622 section 7.1)

    /// Selects stacks, resolves the remote endpoint, races the candidates and returns the first
    /// connection that is ready. A requirement no stack meets throws before any packet is sent.
    public func initiate(timeout: Duration? = nil) async throws -> Connection {
        guard let remote else { throw TransportError.invalidArgument("initiate needs a remote endpoint") }
        let qualifying = try recipes(for: .initiate)
        let loop = self.loop ?? defaultLoop(for: qualifying)
        // SCTP candidates cannot run off the SCTP loop. They join a race an SCTP stack leads, or one
        // the application put on that loop; a race led by another stack leaves them out (unless
        // nothing else is left, so that the reason is reported), also when the group's round robin
        // happens to hand out the SCTP loop, so what is raced never depends on the round robin.
        let sctpLeads = qualifying.first?.stack.layers.contains(.sctp) == true
        let sctpJoins = loop === SCTPRuntime.shared.loop && (sctpLeads || self.loop != nil)
        let runnable = qualifying.filter { !$0.stack.layers.contains(.sctp) || sctpJoins }
        let recipes = runnable.isEmpty ? qualifying : runnable
        let framer = self.framer
        let endpoints = ([remote] + alternativeRemotes).map { (host: $0.hostForResolution, port: $0.port) }
        let configuration = RaceStateMachine.Configuration(stacks: recipes.map(\.stack), endpointCount: endpoints.count,
                                                           stagger: transport.racingStagger, timeout: timeout)
        return try await withCheckedThrowingContinuation { continuation in
            loop.execute {
                let environment = LoopRacingEnvironment(loop: loop)
                let racer = Racer(endpoints: endpoints, configuration: configuration, clock: environment, resolver: environment,
                                  makeLayer: { candidate throws(TransportError) in
                    let recipe = recipes.first { $0.stack == candidate.stack }!
                    return try recipe.makeClientLayer(loop: loop, remote: candidate.address)
                }, completion: { result in
                    continuation.resume(with: result.map { winner in
                        Self.connection(winning: winner, recipes: recipes, framer: framer, loop: loop)
                    })
                })
                racer.start()
            }
        }
    }

    /// The connection around the layer that won the race, in a group of its own.
    private static func connection(winning winner: Racer.Winner, recipes: [StackRecipe],
                                   framer: (any MessageFramer)?, loop: EventLoop) -> Connection {
        let recipe = recipes.first { $0.stack == winner.candidate.stack }!
        let group = ConnectionGroup(recipe: recipe, remote: winner.candidate.address, framer: framer, loop: loop)
        // The layer was made on this loop and stays on it: the connection is isolated to the same loop.
        nonisolated(unsafe) let layer = winner.layer
        let connection = Connection(loop: loop, stack: recipe.stack, layer: layer,
                                    properties: recipe.properties, framer: framer, group: group, metrics: recipe.metrics)
        group.add(connection)
        connection.assumeIsolated { $0.adoptEstablished() }
        return connection
    }

    // MARK: Listen (RFC 9622 section 7.2)

    /// Starts listening on the local endpoint with the best-ranked stack that can listen.
    public func listen(newConnectionLimit: Int? = nil) async throws -> Listener {
        guard local != nil else { throw TransportError.invalidArgument("listen needs a local endpoint") }
        let recipe = try recipes(for: .listen)[0]
        let loop = self.loop ?? defaultLoop(for: [recipe])
        let acceptLoops = self.loop == nil && recipe.stack.layers.first == .tcp ? loopGroup.loops : [loop]
        let address = try Self.localAddress(local!)
        let framer = self.framer
        return try await loop.submit {
            try Listener(loop: loop, recipe: recipe, address: address, framer: framer, newConnectionLimit: newConnectionLimit,
                         acceptLoops: acceptLoops)
        }
    }

    // MARK: Rendezvous (RFC 9622 section 7.3)

    /// Peer-to-peer establishment on stacks that allow it (UDP): binds the local endpoint and
    /// exchanges messages with the remote one.
    public func rendezvous() async throws -> Connection {
        guard local != nil, let remote else { throw TransportError.invalidArgument("rendezvous needs a local and a remote endpoint") }
        let recipe = try recipes(for: .rendezvous)[0]
        let loop = self.loop ?? loopGroup.next()
        let framer = self.framer
        let addresses: [SocketAddress] = try await withCheckedThrowingContinuation { continuation in
            loop.execute {
                Resolver.resolve(remote.hostForResolution, port: remote.port, on: loop) { continuation.resume(with: $0) }
            }
        }
        let connection = try await loop.submit {
            let layer = try recipe.makeClientLayer(loop: loop, remote: addresses[0])
            let group = ConnectionGroup(recipe: recipe, remote: addresses[0], framer: framer, loop: loop)
            let connection = Connection(loop: loop, stack: recipe.stack, layer: layer, properties: recipe.properties,
                                        framer: framer, group: group, metrics: recipe.metrics)
            group.add(connection)
            return connection
        }
        try await connection.establish()
        return connection
    }
}

extension Endpoint {
    var hostForResolution: String {
        switch host {
        case .name(let name): return name
        case .address(let address): return address.ipAddress
        case .any: return "::1"
        }
    }
}
