import Synchronization

/// Connections cloned from one another (RFC 9622 section 7.4). They share properties, the stack,
/// the peer and the security context, so a clone on TLS/TCP resumes the group's TLS session.
public final class ConnectionGroup: Sendable {
    private let recipe: StackRecipe
    private let remote: SocketAddress?
    private let framer: (any MessageFramer)?
    private let loop: EventLoop
    private let members = Mutex<[ObjectIdentifier: WeakConnection]>([:])

    init(recipe: StackRecipe, remote: SocketAddress?, framer: (any MessageFramer)?, loop: EventLoop) {
        self.recipe = recipe
        self.remote = remote
        self.framer = framer
        self.loop = loop
    }

    /// The number of open connections in the group.
    public var count: Int { members.withLock { $0.values.filter { $0.connection != nil }.count } }

    /// The group's open connections (RFC 9622 section 7.4: GroupedConnections).
    public var connections: [Connection] { members.withLock { $0.values.compactMap(\.connection) } }

    func add(_ connection: Connection) {
        members.withLock { $0[ObjectIdentifier(connection)] = WeakConnection(connection: connection) }
    }

    func remove(_ connection: Connection) {
        _ = members.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// The group does not keep its connections alive; the application does.
    private struct WeakConnection: Sendable {
        weak var connection: Connection?
    }

    /// `secured: false`: a plain stream of a TLS/SCTP association (RFC 3436 section 4.3.1).
    func clone(from original: Connection, secured: Bool = true) async throws -> Connection {
        if let limit = recipe.properties.groupConnLimit, count >= limit {
            throw TransportError.invalidArgument("the group already has \(count) connections (groupConnLimit \(limit))")
        }
        let remote = self.remote
        let connection = try await loop.submit { [self] in
            try original.assumeIsolated { original in
                // A stack with streams opens the next one in the same association; others connect anew.
                let layer: Layer
                if let sibling = try recipe.makeCloneLayer(of: original.layer, remote: remote, loop: loop, secured: secured) {
                    layer = sibling
                } else if !secured {
                    throw TransportError.notSupported("only a stream of a \(recipe.stack.name) association can leave its security out; this stack opens a connection per clone")
                } else if let remote {
                    layer = try recipe.makeClientLayer(loop: loop, remote: remote)
                } else {
                    throw TransportError.notSupported("connections accepted by a listener cannot be cloned on this stack")
                }
                // Made on this loop and kept on it: the connection is isolated to the same loop.
                nonisolated(unsafe) let made = layer
                let stack = secured ? recipe.stack : recipe.stack.withoutSecurity
                let connection = Connection(loop: loop, stack: stack, layer: made, properties: recipe.properties,
                                            framer: framer, group: self, metrics: recipe.metrics.forStack(stack.name))
                add(connection)
                return connection
            }
        }
        try await connection.establish()
        return connection
    }
}
