import Synchronization

/// Connections cloned from one another (RFC 9622 section 7.4). They share properties, the stack,
/// the peer and the security context, so a clone on TLS/TCP resumes the group's TLS session.
public final class ConnectionGroup: Sendable {
    private let recipe: StackRecipe
    private let remote: SocketAddress?
    private let framer: (any MessageFramer)?
    private let loop: EventLoop
    private let members = Mutex<[ObjectIdentifier: Int]>([:])
    private let memberCount = Mutex(0)

    init(recipe: StackRecipe, remote: SocketAddress?, framer: (any MessageFramer)?, loop: EventLoop) {
        self.recipe = recipe
        self.remote = remote
        self.framer = framer
        self.loop = loop
    }

    /// The number of open connections in the group.
    public var count: Int { memberCount.withLock { $0 } }

    func add(_ connection: Connection) {
        memberCount.withLock { $0 += 1 }
        members.withLock { $0[ObjectIdentifier(connection)] = 1 }
    }

    func remove(_ connection: Connection) {
        let removed = members.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) != nil }
        if removed { memberCount.withLock { $0 -= 1 } }
    }

    func clone(from original: Connection) async throws -> Connection {
        guard let remote else { throw TransportError.notSupported("connections accepted by a listener cannot be cloned") }
        if let limit = recipe.properties.groupConnLimit, count >= limit {
            throw TransportError.invalidArgument("the group already has \(count) connections (groupConnLimit \(limit))")
        }
        let connection = try await loop.submit { [self] in
            let layer = try recipe.makeClientLayer(loop: loop, remote: remote)
            let connection = Connection(loop: loop, stack: recipe.stack, layer: layer, properties: recipe.properties,
                                        framer: framer, group: self)
            add(connection)
            return connection
        }
        try await connection.establish()
        return connection
    }
}
