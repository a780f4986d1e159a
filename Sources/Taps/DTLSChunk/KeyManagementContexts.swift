internal import COpenSSL
import TapsDTLS13

/// The handshake methods the DTLS chunk's key management runs, and what differs between them on
/// the wire.
enum HandshakeMethod: Equatable {
    /// DTLS 1.3 (draft-westerlund-tsvwg-sctp-dtls-handshake), on BoringSSL.
    case dtls13
    /// TLS 1.3 (draft-porfiri-tsvwg-sctp-dtls-handshake), on the system OpenSSL.
    case tls13

    var name: String { self == .dtls13 ? "DTLS 1.3" : "TLS 1.3" }

    /// The low bits of a connection's index its messages carry: the DCI's two, or the epoch's seven.
    var indexMask: UInt64 { self == .dtls13 ? 3 : 0x7F }

    /// The server confirms every handshake's keys with Protection Established, rekeys and the
    /// handshake after a restart included (draft-porfiri); the DTLS method's PVALID follows the
    /// first handshake only.
    var confirmsEveryHandshake: Bool { self == .tls13 }

    /// The peer closes each connection once its keys are in (draft-porfiri: "the TLS connection
    /// SHOULD be closed promptly"), so a close says nothing about the drain rule; on the DTLS
    /// method the peer's close_notify on the replaced connection ends its drain.
    var closesAfterKeying: Bool { self == .tls13 }

    /// A key management message as the method frames it; nil when it is malformed.
    func parse(_ message: [UInt8]) -> KeyManagementInbound? {
        switch self {
        case .dtls13:
            if message == DTLSKeyManagementMessage.protectionValid { return .protectionValid }
            return DTLSKeyManagementMessage(bytes: message).map {
                .records(indexBits: $0.connectionIndexBits, records: $0.records, clientHello: $0.startsWithClientHello)
            }
        case .tls13:
            switch TLSKeyManagementMessage(bytes: message)?.content {
            case .records(let records)?:
                return .records(indexBits: message[0] & 0x7F, records: records, clientHello: TLSKeyManagementMessage.startsWithClientHello(records))
            case .control(TLSKeyManagementMessage.protectionEstablished, _)?: return .protectionValid
            case .control?, nil: return nil
            }
        }
    }

    /// PVALID, or Protection Established for the keys of connection `index`.
    func protectionValid(for index: UInt64) -> [UInt8] {
        switch self {
        case .dtls13: DTLSKeyManagementMessage.protectionValid
        case .tls13: TLSKeyManagementMessage(epoch: index, content: .control(type: TLSKeyManagementMessage.protectionEstablished, data: [])).bytes
        }
    }
}

/// A key management message, read.
enum KeyManagementInbound: Equatable {
    /// Records for the connection whose index has these low bits.
    case records(indexBits: UInt8, records: [UInt8], clientHello: Bool)
    /// PVALID (DTLS method) or Protection Established (TLS method).
    case protectionValid
}

/// What a handshake method needs for every key management connection it makes, built once by a
/// stack's recipe (the role is only known once the 0x8006 negotiation is done): the engines'
/// contexts for both roles, and what the methods share.
struct KeyManagementContexts: @unchecked Sendable {
    // @unchecked Sendable: the engines' contexts are immutable after init.
    enum Engines {
        case dtls13(client: DTLS13Context, server: DTLS13Context)
        case tls13(client: TLSContext, server: TLSContext)
    }

    let engines: Engines
    let rekeyPolicy: DTLSChunkRekeyPolicy
    /// IV: decides on the peer of every key management connection, after the engine's validation.
    let trustVerifier: TrustVerifier?
    /// CM: the client's sessions, `SecurityParameters.sessionCache` or one of the recipe's own.
    let sessionCache: TLSSessionCache
    /// SHA-256 of our certificate's public key, in hex: sessions are kept per identity.
    let ownKeyPin: String
    /// DTLS method: a session exported earlier (`resumptionSession` with the exported-session
    /// prefix), offered when the cache holds none for the peer.
    let importedSession: [UInt8]?
    /// The KMId this method goes by.
    let method: DTLSKeyManagementMethod

    var handshake: HandshakeMethod {
        if case .dtls13 = engines { return .dtls13 }
        return .tls13
    }

    /// Whether the parameters can run a handshake method: mutual authentication needs our
    /// certificate and key and the roots the peer's certificate must chain to (not the system's store).
    static func configured(in security: SecurityParameters) -> Bool {
        guard security.localIdentity != nil, case .pem = security.trustedRoots else { return false }
        return true
    }

    /// The DTLS 1.3 method; nil when the parameters cannot run it (`configured(in:)`). Everything in PEM.
    init?(dtls13 security: SecurityParameters) throws(TransportError) {
        guard Self.configured(in: security), let identity = security.localIdentity, case .pem(let roots) = security.trustedRoots else { return nil }
        let prefix = HandshakeKeyManagement.exportedSessionPrefix
        let chain = try identity.certificateChain.load(), key = try identity.privateKey.load(), trusted = try roots.load()
        for (name, bytes) in [("certificate chain", chain), ("private key", key), ("trusted roots", trusted)] where !Self.isPEM(bytes) {
            throw .invalidCredentials("DTLS 1.3 key management reads PEM; the \(name) is not")
        }
        var configuration = DTLS13Configuration(certificateChainPEM: chain, privateKeyPEM: key, trustedRootsPEM: trusted)
        configuration.groups = security.algorithms.groups
        configuration.keyLog = (security.keyLog ?? .environment)?.write
        configuration.defersTrustDecision = security.trustVerifier != nil
        configuration.issuesSessionTickets = security.sessionTickets
        // SCTP delivers the handshake reliably: a long first retransmission keeps DTLS's own out of
        // the way, and user messages carry far more than an IP packet.
        configuration.initialRetransmissionMilliseconds = 3_000
        configuration.maximumDatagram = 16_000
        let client: DTLS13Context, server: DTLS13Context
        do {
            client = try DTLS13Context(role: .client, configuration: configuration)
            server = try DTLS13Context(role: .server, configuration: configuration)
        } catch {
            throw .invalidCredentials("DTLS 1.3 key management: \(error)")
        }
        let importedSession = security.resumptionSession.flatMap { $0.starts(with: prefix) ? Array($0.dropFirst(prefix.count)) : nil }
        if let importedSession {
            // Refused now rather than when the first association's handshake would offer it.
            do { _ = try DTLS13Engine(context: client, resuming: importedSession) } catch {
                throw .invalidArgument("resumptionSession: a DTLS chunk session that BoringSSL cannot read (\(error.message)); give the bytes Connection.exportSession() returned")
            }
        }
        try self.init(engines: .dtls13(client: client, server: server), security: security, method: security.dtlsChunkDTLS13KeyManagementID, certificateChain: chain,
                      importedSession: importedSession)
    }

    /// The TLS 1.3 method (KMId 192); nil when the parameters cannot run it. The system OpenSSL's
    /// TLS 1.3 only, the suites the chunk has, mutual authentication, no PSK of the application's.
    init?(tls13 security: SecurityParameters) throws(TransportError) {
        guard Self.configured(in: security), let identity = security.localIdentity else { return nil }
        let sessionCache = Self.sessionCache(security)
        var keyManagement = security
        keyManagement.allowedVersions = [.tls13]
        keyManagement.requireClientCertificate = true
        keyManagement.trustVerifier = nil
        keyManagement.identityChallenge = nil
        keyManagement.identitiesByServerName = [:]
        keyManagement.applicationProtocols = []
        keyManagement.preSharedKey = nil
        keyManagement.resumptionSession = nil
        keyManagement.sessionCache = sessionCache
        let chunkSuites = DTLSChunkCipherSuite.allCases.map(\.description)
        let requested = security.algorithms.tls13CipherSuites
        keyManagement.algorithms.tls13CipherSuites = requested.isEmpty ? chunkSuites : requested.filter(chunkSuites.contains)
        guard !keyManagement.algorithms.tls13CipherSuites.isEmpty else {
            throw .invalidArgument("tls13CipherSuites: TLS 1.3 key management needs one the DTLS chunk protects with (\(chunkSuites.joined(separator: ", ")))")
        }
        let defers = security.trustVerifier != nil
        let server = try TLSContext(keyManagement, role: .server, defersTrustDecision: defers)
        // Without tickets nothing resumes: OpenSSL would otherwise issue stateful TLS 1.3 tickets.
        if !security.sessionTickets { SSL_CTX_set_num_tickets(server.context, 0) }
        let engines = Engines.tls13(client: try TLSContext(keyManagement, role: .client, defersTrustDecision: defers), server: server)
        try self.init(engines: engines, security: security, method: .tls13, certificateChain: try identity.certificateChain.load(),
                      importedSession: nil, sessionCache: sessionCache)
    }

    private init(engines: Engines, security: SecurityParameters, method: DTLSKeyManagementMethod, certificateChain: [UInt8],
                 importedSession: [UInt8]?, sessionCache: TLSSessionCache? = nil) throws(TransportError) {
        try security.dtlsChunkRekey.validate()
        self.engines = engines
        rekeyPolicy = security.dtlsChunkRekey
        trustVerifier = security.trustVerifier
        self.sessionCache = sessionCache ?? Self.sessionCache(security)
        self.importedSession = importedSession
        self.method = method
        ownKeyPin = Hex.encode(try Credentials.publicKeySHA256(ofCertificate: certificateChain))
    }

    private static func sessionCache(_ security: SecurityParameters) -> TLSSessionCache {
        security.sessionCache ?? TLSSessionCache(maxSessions: security.maxCachedSessions, lifetimeSeconds: security.cachedSessionLifetimeSeconds)
    }

    /// A new key management connection of this method. A client that `resumes` offers the session
    /// kept under `sessionKey` (CM).
    func connection(index: UInt64, role: KeyManagementRole, sessionKey: String?, resumes: Bool, isRekey: Bool, loop: EventLoop,
                    send: @escaping ([UInt8]) -> Void) throws(TransportError) -> KeyManagementConnection {
        switch engines {
        case .dtls13(let client, let server):
            let session = resumes ? sessionKey.flatMap { sessionCache.encodedSession(for: $0) ?? importedSession } : nil
            return try DTLS13KeyManagementConnection(index: index, role: role, client: client, server: server, resuming: session,
                                                     isRekey: isRekey, loop: loop, send: send)
        case .tls13(let client, let server):
            return try TLS13KeyManagementConnection(index: index, role: role, context: role == .client ? client : server,
                                                    sessionKey: sessionKey, resumes: resumes, isRekey: isRekey, send: send)
        }
    }

    private static func isPEM(_ bytes: [UInt8]) -> Bool { bytes.starts(with: Array("-----BEGIN".utf8)) || String(decoding: bytes.prefix(4096), as: UTF8.self).contains("-----BEGIN") }
}
