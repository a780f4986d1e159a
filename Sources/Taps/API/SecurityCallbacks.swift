/// The connection-establishment callbacks of RFC 9622 section 6.3.7. Each is async: the handshake
/// waits (OpenSSL suspends it) while the callback runs, and other connections on the loop go on.

/// What the handshake knows when it asks for our identity.
public struct IdentityChallenge: Sendable {
    /// Which end of the handshake a callback runs on.
    public enum Role: Sendable {
        /// The end that initiated the connection.
        case client
        /// The listening end.
        case server
    }
    /// Client: the server asked for a client certificate. Server: a ClientHello arrived.
    public let role: Role
    /// Server: the host name the client sent in SNI (nil without SNI). Client: the name we connect to.
    public let serverName: String?
    /// Client: the certificate authorities the server named in its request, as one-line subjects.
    public let acceptableIssuers: [String]
}

/// IPK: supplies an identity when the handshake asks for it. Returning nil sends no certificate
/// (client) or ends the handshake (server); a thrown error ends the handshake with that reason.
public struct IdentityChallengeHandler: Sendable, Hashable {
    private let token = CallbackToken()
    let body: @Sendable (IdentityChallenge) async throws -> SecurityParameters.Identity?

    /// A handler that answers each challenge with `body`.
    public init(_ body: @escaping @Sendable (IdentityChallenge) async throws -> SecurityParameters.Identity?) {
        self.body = body
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.token === rhs.token }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(token)) }
}

/// What a trust decision sees: the peer's chain as it sent it and OpenSSL's own verdict (chain to
/// the trusted roots, validity dates, and the host name or address on a client).
public struct TrustChallenge: Sendable {
    /// The end that decides.
    public let role: IdentityChallenge.Role
    /// DER certificates, leaf first.
    public let peerChain: [[UInt8]]
    /// Nil when the default validation passed, otherwise its reason.
    public let defaultValidationError: String?
    /// The name the client expects (client side).
    public let serverName: String?

    /// Whether OpenSSL's default validation passed.
    public var passesDefaultValidation: Bool { defaultValidationError == nil }

    /// SHA-256 of the leaf's SubjectPublicKeyInfo (the pin format of RFC 7469), or nil without a leaf.
    public var leafPublicKeySHA256: [UInt8]? {
        peerChain.first.flatMap { try? Credentials.publicKeySHA256(ofCertificate: $0) }
    }
}

/// A `TrustVerifier`'s answer.
public enum TrustDecision: Sendable, Equatable {
    /// Trust the peer: the handshake goes on.
    case trust
    /// Refuse the peer; `reason` becomes the `certificateRejected` error's message.
    case reject(reason: String)
}

/// IV: decides whether the peer's chain is trusted. On a client the handshake is suspended until
/// the decision and a rejection sends a bad_certificate alert; a server decides once the
/// handshake completed, before the connection is delivered or any data passes.
public struct TrustVerifier: Sendable, Hashable {
    private let token = CallbackToken()
    let body: @Sendable (TrustChallenge) async -> TrustDecision

    /// A verifier that decides each challenge with `body`.
    public init(_ body: @escaping @Sendable (TrustChallenge) async -> TrustDecision) {
        self.body = body
    }

    /// Trusts a peer only if its leaf's public key is one of `pins` (SHA-256 of the
    /// SubjectPublicKeyInfo), and, unless `requireValidChain` is false, only if default validation
    /// passes too.
    public static func pinning(publicKeySHA256 pins: Set<[UInt8]>, requireValidChain: Bool = true) -> TrustVerifier {
        TrustVerifier { challenge in
            if requireValidChain, let error = challenge.defaultValidationError { return .reject(reason: error) }
            guard let pin = challenge.leafPublicKeySHA256, pins.contains(pin) else {
                return .reject(reason: "the peer's public key matches no pinned key")
            }
            return .trust
        }
    }

    /// The pin of a certificate (SHA-256 of its SubjectPublicKeyInfo), to pass to `pinning`.
    public static func publicKeySHA256(ofCertificate source: SecurityParameters.CredentialSource) throws(TransportError) -> [UInt8] {
        try Credentials.publicKeySHA256(ofCertificate: source.load())
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.token === rhs.token }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(token)) }
}

/// Gives a callback an identity, so SecurityParameters stay Hashable (they key the context cache).
final class CallbackToken: Sendable {}
