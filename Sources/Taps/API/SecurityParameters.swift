import Foundation

/// Security parameters (RFC 9622 section 6.3). The defaults are safe: TLS 1.2 or newer, the peer's
/// certificate and host name validated against the system's trust store. Weakening them takes an
/// explicit call (`disabled`, `disablePeerVerification()`).
public struct SecurityParameters: Sendable, Hashable {
    /// False for `disabled`: no security protocol is added (plain TCP or UDP).
    public private(set) var isEnabled: Bool = true

    /// Our certificate chain and private key (servers; clients for mutual authentication).
    public var localIdentity: Identity? = nil
    /// Server: identities chosen by the host name the client sends in SNI; `localIdentity` serves
    /// every other name and clients that send none.
    public var identitiesByServerName: [String: Identity] = [:]
    /// The roots a peer's certificate must chain to.
    public var trustedRoots: TrustRoots = .system
    /// The name to send in SNI and to check the peer's certificate against; defaults to the remote
    /// endpoint's host name.
    public var serverName: String? = nil
    /// Whether the peer's certificate is validated. A server does not ask for client certificates
    /// unless `requireClientCertificate` is set.
    public private(set) var verifiesPeer: Bool = true
    /// Server: ask for a client certificate, and refuse a client that sends none or one that does not validate.
    public var requireClientCertificate: Bool = false
    /// Allowed protocol versions (RFC 9622 section 6.3.1, allowedSecurityProtocols).
    public var allowedVersions: Set<ProtocolVersion> = [.tls12, .tls13, .dtls12, .dtls13]
    /// Application-layer protocols to offer or accept (ALPN), in preference order.
    public var applicationProtocols: [String] = []
    /// Algorithms (RFC 8922 ALG); empty lists keep OpenSSL's defaults, which are AEAD-only for TLS 1.3.
    public var algorithms = Algorithms()

    /// Cipher suites, groups and signature algorithms, by their OpenSSL / IANA names.
    public struct Algorithms: Sendable, Hashable {
        /// TLS 1.3 suites, e.g. `TLS_CHACHA20_POLY1305_SHA256`.
        public var tls13CipherSuites: [String] = []
        /// TLS 1.2 (and DTLS 1.2) ciphers in OpenSSL's names, e.g. `ECDHE-ECDSA-AES128-GCM-SHA256`.
        public var tls12Ciphers: [String] = []
        /// Key-exchange groups, e.g. `X25519`, `P-256`.
        public var groups: [String] = []
        /// Signature algorithms, e.g. `ECDSA+SHA256`, `ed25519`, `rsa_pss_rsae_sha256`.
        public var signatureAlgorithms: [String] = []
        /// No restriction: OpenSSL's defaults.
        public init() {}
    }
    /// Preferences over the RFC 8922 security interfaces a stack's security protocol must expose.
    public private(set) var interfacePreferences: [SecurityInterface: Preference] = [:]

    /// PSKI: an external pre-shared key (RFC 9622 section 6.3.6). Only stacks whose security
    /// protocol imports PSKs qualify once it is set.
    public var preSharedKey: PreSharedKey? = nil

    /// PSKI, stack dtls-chunk-sctp: the SCTP DTLS chunk's pre-shared cryptographic parameters (KMId
    /// 0), for one association per process (see ``DTLSChunkPreSharedKeys``). The stack qualifies only
    /// with key management configured.
    public var dtlsChunkKeys: DTLSChunkPreSharedKeys? = nil
    /// dtls-chunk-sctp: strict DTLS mode (the default) refuses a peer that offers no DTLS chunk, or
    /// none we agree with, with an ABORT. False is the draft's loose mode: the DTLS chunk is only
    /// preferred, the association then goes on in plain SCTP, and the connection reports no
    /// security (`securityDetails` is nil).
    public var dtlsChunkRequired: Bool = true
    /// dtls-chunk-sctp: DTLS chunks the replay window of each epoch spans (draft "Configure Replay
    /// Protection"; default 64). Wider suits paths that reorder many packets.
    public var dtlsChunkReplayWindow: Int = 64
    /// dtls-chunk-sctp: the key management methods to offer, in preference order; nil offers every
    /// one the parameters configure (DTLS 1.3 with an identity and PEM roots, then pre-shared
    /// parameters with `dtlsChunkKeys`). A listed method the parameters do not configure is an error.
    public var dtlsChunkKeyManagement: [DTLSKeyManagementMethod]? = nil
    /// dtls-chunk-sctp: the KMId under which DTLS 1.3 key management is offered and recognised.
    /// Its draft asks for a 16-bit identifier the chunk draft's 8-bit registry cannot hold, so a
    /// value from the first-come range stands in: 193 (``DTLSKeyManagementMethod/dtls13``) by
    /// default; both ends must use the same. Not 0 or 192, which name the other methods.
    /// `dtlsChunkKeyManagement` may list the method by this value or as `.dtls13`.
    public var dtlsChunkDTLS13KeyManagementID: DTLSKeyManagementMethod = .dtls13
    /// dtls-chunk-sctp with a handshake method (KU): when a new key management connection replaces
    /// the keys. `Connection.updateKeys()` rekeys at once whatever the policy.
    public var dtlsChunkRekey = DTLSChunkRekeyPolicy()
    /// dtls-chunk-sctp, an initiator that restarts an association its process lost: the restart
    /// key context `Connection.exportRestartContext()` gave (draft-ietf-tsvwg-sctp-dtls-chunk, "SCTP
    /// Restart Considerations"). The INIT and INIT ACK go in clear, then the COOKIE ECHO and
    /// everything after it under that context, until a fresh handshake replaces it. The association
    /// comes from the local port the context names (unless the Preconnection's local endpoint or
    /// `sctp.localUDPPort` gives one) to the same peer, which must still hold it; otherwise the
    /// attempt fails like any unanswered one. Use the bytes for one restart only: a second would
    /// send under the same nonces.
    public var dtlsChunkRestartContext: [UInt8]? = nil

    /// CM: the most sessions the Preconnection's cache keeps, oldest evicted first (RFC 9622
    /// section 6.3.5). A server applies it to its own cache.
    public var maxCachedSessions: Int = 100
    /// CM: how long a session stays resumable; a server also gives its tickets this lifetime.
    public var cachedSessionLifetimeSeconds: Int = 7200
    /// CM, server: issue session tickets (RFC 5077, RFC 8446 section 4.6.1). Off, TLS 1.2 resumes by
    /// session id from the server's cache and TLS 1.3 by tickets the server keeps state for.
    public var sessionTickets: Bool = true
    /// CM: a cache shared across Preconnections; nil gives each Preconnection its own cache with the
    /// limits above.
    public var sessionCache: TLSSessionCache? = nil
    /// CM: a session exported earlier (`Connection.exportSession()`), offered on the first
    /// connection to the peer when the cache holds nothing newer for it. A TLS session and one of
    /// the DTLS chunk's key management are told apart: each stack takes only its own kind.
    public var resumptionSession: [UInt8]? = nil

    /// IPK: asked for our identity when the handshake needs it, i.e. a server's certificate
    /// request on a client, the ClientHello (with its SNI name) on a server (RFC 9622 section 6.3.7).
    public var identityChallenge: IdentityChallengeHandler? = nil
    /// IV: decides whether to trust the peer's certificate chain, seeing the default verdict
    /// (RFC 9622 section 6.3.7). See `TrustVerifier.pinning` for SPKI pinning.
    public var trustVerifier: TrustVerifier? = nil
    /// Key log for Wireshark (NSS key log lines): every TLS and DTLS connection made with these
    /// parameters logs its secrets there; nil uses `SSLKEYLOGFILE` when set (`KeyLog.environment`).
    public var keyLog: KeyLog? = nil

    /// The safe defaults: the same as `clientDefault`.
    public init() {}

    /// Client defaults: validate the server against the system's roots.
    public static var clientDefault: SecurityParameters { SecurityParameters() }

    /// Server defaults with the given identity.
    public static func server(identity: Identity) -> SecurityParameters {
        var parameters = SecurityParameters()
        parameters.localIdentity = identity
        return parameters
    }

    /// No security protocol (RFC 9622 NewDisabledSecurityParameters).
    public static var disabled: SecurityParameters {
        var parameters = SecurityParameters()
        parameters.isEnabled = false
        return parameters
    }

    /// Turns certificate validation off. Only for tests and explicit opt-in.
    public mutating func disablePeerVerification() { verifiesPeer = false }

    /// Interfaces the configured parameters cannot work without: a PSK needs PSKI, an identity
    /// challenge IPK, a trust verifier IV, an imported session CM.
    var configuredInterfaces: SecurityInterface {
        var interfaces: SecurityInterface = []
        if preSharedKey != nil || dtlsChunkKeys != nil { interfaces.insert(.preSharedKeyImport) }
        if identityChallenge != nil { interfaces.insert(.identitiesAndPrivateKeys) }
        if trustVerifier != nil { interfaces.insert(.identityValidation) }
        if resumptionSession != nil || sessionCache != nil { interfaces.insert(.sessionCache) }
        return interfaces
    }

    /// Only stacks whose security protocol exposes every one of `interfaces` qualify.
    public mutating func require(_ interfaces: SecurityInterface...) { set(.require, interfaces) }
    /// Rank stacks that expose `interfaces` higher.
    public mutating func prefer(_ interfaces: SecurityInterface...) { set(.prefer, interfaces) }
    /// Rank stacks that expose `interfaces` lower.
    public mutating func avoid(_ interfaces: SecurityInterface...) { set(.avoid, interfaces) }
    /// No stack whose security protocol exposes any of `interfaces` qualifies.
    public mutating func prohibit(_ interfaces: SecurityInterface...) { set(.prohibit, interfaces) }

    private mutating func set(_ preference: Preference, _ interfaces: [SecurityInterface]) {
        for interface in interfaces {
            for (single, _) in SecurityInterface.all where interface.contains(single) {
                interfacePreferences[single] = preference
            }
        }
    }

    /// A version of TLS or DTLS, named as OpenSSL names it.
    public enum ProtocolVersion: String, Sendable, Hashable, CaseIterable, Comparable {
        /// TLS 1.2 (RFC 5246).
        case tls12 = "TLSv1.2"
        /// TLS 1.3 (RFC 8446).
        case tls13 = "TLSv1.3"
        /// DTLS 1.2 (RFC 6347).
        case dtls12 = "DTLSv1.2"
        /// DTLS 1.3 (RFC 9147): the record protection of the SCTP DTLS chunk and its key management.
        case dtls13 = "DTLSv1.3"
        /// Orders TLS before DTLS and older before newer.
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.order < rhs.order }
        private var order: Int { [.tls12: 0, .tls13: 1, .dtls12: 2, .dtls13: 3][self]! }
    }

    /// A certificate chain (leaf first) and its private key (RSA, ECDSA or Ed25519), each PEM or
    /// DER encoded; the encoding is recognised from the bytes.
    public struct Identity: Sendable, Hashable {
        /// The certificates, the leaf first.
        public var certificateChain: CredentialSource
        /// The leaf certificate's private key.
        public var privateKey: CredentialSource
        /// An identity of `certificateChain` and `privateKey`.
        public init(certificateChain: CredentialSource, privateKey: CredentialSource) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
        /// Files in PEM or DER.
        public static func files(certificate: String, key: String) -> Identity {
            Identity(certificateChain: .file(certificate), privateKey: .file(key))
        }
        /// Files in PEM (DER is recognised too): the same as `files(certificate:key:)`.
        public static func pemFiles(certificate: String, key: String) -> Identity {
            files(certificate: certificate, key: key)
        }
    }

    /// Certificates or keys in a file or in memory, PEM or DER encoded.
    public enum CredentialSource: Sendable, Hashable {
        /// A file, read when a connection or listener is set up.
        case file(String)
        /// Bytes in memory.
        case bytes([UInt8])

        func load() throws(TransportError) -> [UInt8] {
            switch self {
            case .bytes(let bytes): return bytes
            case .file(let path):
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw .invalidCredentials("cannot read \(path)")
                }
                return [UInt8](data)
            }
        }
    }

    /// The certificates a peer's chain must lead to.
    public enum TrustRoots: Sendable, Hashable {
        /// The system's trust store (OpenSSL's default paths).
        case system
        /// Only these roots (PEM, or one DER certificate).
        case pem(CredentialSource)

        /// Only the roots in `file` (PEM, or one DER certificate).
        public static func pem(file: String) -> TrustRoots { .pem(.file(file)) }
    }
}
