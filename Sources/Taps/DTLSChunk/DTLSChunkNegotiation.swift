/// What an endpoint offers for the DTLS chunk (the draft's "Set Supported DTLS Key Management
/// Parameters"): methods in preference order, roles, restart support, strict or loose mode.
public struct DTLSChunkPolicy: Sendable, Hashable {
    /// The key management methods offered, most preferred first.
    public var methods: [DTLSKeyManagementMethod]
    /// Whether this end may take the key management client role.
    public var actsAsClient: Bool
    /// Whether this end may take the key management server role.
    public var actsAsServer: Bool
    /// Whether this end keeps a restart key context (the parameter's R bit).
    public var supportsRestart: Bool
    /// Strict DTLS mode: no association without the DTLS chunk. Loose mode goes on in plain SCTP
    /// when the peer does not offer it, and reports no security.
    public var required: Bool

    /// A policy offering `methods` in either role, strict by default.
    public init(methods: [DTLSKeyManagementMethod], actsAsClient: Bool = true, actsAsServer: Bool = true,
                supportsRestart: Bool = false, required: Bool = true) {
        self.methods = methods
        self.actsAsClient = actsAsClient
        self.actsAsServer = actsAsServer
        self.supportsRestart = supportsRestart
        self.required = required
    }

    func parameter(tieBreaker: UInt32) -> DTLSKeyManagementParameter {
        var flags: DTLSKeyManagementParameter.Roles = []
        if actsAsClient { flags.insert(.client) }
        if actsAsServer { flags.insert(.server) }
        if supportsRestart { flags.insert(.restart) }
        return DTLSKeyManagementParameter(tieBreaker: tieBreaker, flags: flags, methods: methods)
    }
}

/// The outcome of the establishment procedure (draft "Establishment of a Protected Association"):
/// our key management role, the method, and both parameters as they went on the wire (the draft's
/// "Get Agreed DTLS Key Management Method and Role").
public struct DTLSChunkAgreement: Sendable, Hashable {
    /// A key management role, as the 0x8006 negotiation assigns it.
    public enum Role: String, Sendable, Hashable {
        /// Drives the key management handshake.
        case client
        /// Answers it.
        case server
    }

    /// Our key management role.
    public let role: Role
    /// The key management method both ends agreed on.
    public let method: DTLSKeyManagementMethod
    /// Both ends set the R bit.
    public let restartSupported: Bool
    /// Our DTLS Key Management parameter (0x8006), as it went on the wire.
    public let localParameter: [UInt8]
    /// The peer's DTLS Key Management parameter, as it arrived.
    public let peerParameter: [UInt8]

    /// "Down Grade Prevention Data": the client role's parameter, then the server role's.
    public var downgradePreventionData: [UInt8] {
        role == .client ? localParameter + peerParameter : peerParameter + localParameter
    }
}

/// Why the establishment procedure failed, with the error cause an ABORT carries (draft "New Error
/// Causes").
enum DTLSChunkNegotiationFailure: Error, Equatable, Sendable {
    case missingSupport
    case noCommonMethod
    case tieBreakerCollision
    case incompatibleRoles

    var causeCode: UInt16 {
        switch self {
        case .missingSupport: 100
        case .noCommonMethod: 101
        case .tieBreakerCollision: 102
        case .incompatibleRoles: 103
        }
    }

    init?(causeCode: UInt16) {
        switch causeCode {
        case 100: self = .missingSupport
        case 101: self = .noCommonMethod
        case 102: self = .tieBreakerCollision
        case 103: self = .incompatibleRoles
        default: return nil
        }
    }

    /// Why a peer that sent this cause refused.
    var peerReason: String {
        switch self {
        case .missingSupport: "it requires the SCTP DTLS chunk, which this end did not offer (error cause 100)"
        case .noCommonMethod: "no DTLS key management method in common (error cause 101)"
        case .tieBreakerCollision: "both ends chose the same DTLS key management tie breaker; try again (error cause 102)"
        case .incompatibleRoles: "the DTLS key management roles do not complement each other (error cause 103)"
        }
    }

    var transportError: TransportError {
        switch self {
        case .missingSupport: .handshakeFailed("the peer does not support the SCTP DTLS chunk, and it is required (error cause 100)")
        case .noCommonMethod: .handshakeFailed("no DTLS key management method in common with the peer (error cause 101)")
        case .tieBreakerCollision: .handshakeFailed("both ends chose the same DTLS key management tie breaker; try again (error cause 102)")
        case .incompatibleRoles: .handshakeFailed("the DTLS key management roles of the two ends do not complement each other (error cause 103)")
        }
    }
}

enum DTLSChunkNegotiation {
    /// Runs the establishment procedure on our parameter and the peer's. Roles first: an end that
    /// offers one role takes it if the other end can take the reverse; if both offer both, the
    /// larger tie breaker is the server. Then the server's list decides the method: its first
    /// entry the client also supports.
    static func agree(local: DTLSKeyManagementParameter, peer: DTLSKeyManagementParameter?) -> Result<DTLSChunkAgreement, DTLSChunkNegotiationFailure> {
        guard let peer else { return .failure(.missingSupport) }
        let ours = local.flags.intersection([.client, .server]), theirs = peer.flags.intersection([.client, .server])
        let role: DTLSChunkAgreement.Role
        switch (ours, theirs) {
        case ([.client], let other) where other.contains(.server): role = .client
        case ([.server], let other) where other.contains(.client): role = .server
        case (let other, [.client]) where other.contains(.server): role = .server
        case (let other, [.server]) where other.contains(.client): role = .client
        case ([.client, .server], [.client, .server]):
            guard local.tieBreaker != peer.tieBreaker else { return .failure(.tieBreakerCollision) }
            role = local.tieBreaker > peer.tieBreaker ? .server : .client
        default:
            return .failure(.incompatibleRoles)
        }
        let (serverList, clientList) = role == .server ? (local.methods, peer.methods) : (peer.methods, local.methods)
        guard let method = serverList.first(where: clientList.contains) else { return .failure(.noCommonMethod) }
        return .success(DTLSChunkAgreement(
            role: role, method: method,
            restartSupported: local.flags.contains(.restart) && peer.flags.contains(.restart),
            localParameter: local.wireBytes, peerParameter: peer.wireBytes))
    }
}
