/// A protocol stack as data: its layers bottom-up, what it provides, and its security protocol.
/// Selection and racing read only these fields; nothing switches on a stack's name.
public struct ProtocolStack: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase name used on command lines: tcp, udp, tls-tcp, dtls-udp.
    public let name: String
    /// The layers, bottom up.
    public let layers: [LayerKind]
    /// What the stack provides, matched against the selection properties.
    public let features: TransportFeatures
    /// The security protocol, nil on a plain stack.
    public let security: SecurityProtocol?
    /// How the stack can establish connections.
    public let roles: Set<Role>
    /// How much application data a Connection on this stack lets wait in user space, beyond what
    /// the kernel or usrsctp buffers, before `send` suspends (back-pressure). Chosen by measurement
    /// (Docs/Benchmarks.md): 512 KB on TLS/TCP, 128 KB per stream on TLS/SCTP, 4 MB elsewhere.
    /// - TLS/TCP: at 4 MB the sender in taps-bench idled ~12 % of the time while its receiver worked
    ///   through a backlog; at 512 KB it never waits, as the C client never does. Against the C
    ///   baseline, medians of 6 alternating runs in three A/Bs: 0.79 / 0.89 / 0.91 at 4 MB, 1.07 /
    ///   1.07 / 0.99 at 512 KB (256 KB 1.04, 1 MB 0.93, 2 MB 0.95).
    /// - TCP: 512 KB did not help (0.99 -> 0.94 of the baseline over 12 runs each, within what
    ///   plain TCP's runs move by), so it keeps 4 MB.
    /// - SCTP: its send queue is where connPriority and msgPriority reorder what waits; a deeper
    ///   queue gives a more important message more to overtake.
    /// - TLS/SCTP: what waits there is sealed records, which usrsctp copies into its own buffer
    ///   when room frees. At 4 MB they had left the cache by then: usrsctp's copy of them cost
    ///   2.7 times what it costs for plain sctp's messages, and the sender's CPU per MB was 1.44
    ///   against sctp's 1.18 ms (perf, MTU 16384). At 128 KB per stream, 1 and 4 streams, that copy
    ///   costs what it does on sctp and the sender 1.35 ms per MB, the difference being AES-GCM;
    ///   256 KB was as good for one stream, not for four.
    public let sendHighWater: Int
    /// Why the stack lacks a feature that its layers would otherwise suggest, for selection's
    /// explanations (tls-sctp: RFC 3436 forbids unordered and limited-lifetime TLS records).
    public let restrictions: [FeatureRestriction]

    /// Features a stack does not provide although its layers could, and why.
    public struct FeatureRestriction: Sendable, Hashable {
        /// The features withheld.
        public let features: TransportFeatures
        /// Why, as `candidateStacks()` reports it.
        public let reason: String
    }

    /// A protocol layer a stack is built of.
    public enum LayerKind: String, Sendable, Hashable {
        /// TCP, from libuv.
        case tcp
        /// UDP, from libuv.
        case udp
        /// TLS 1.2 / 1.3, from OpenSSL.
        case tls
        /// DTLS 1.2, from OpenSSL.
        case dtls
        /// SCTP (usrsctp) over UDP encapsulation (RFC 6951).
        case sctp
        /// The SCTP DTLS chunk: protection of every packet between SCTP and UDP.
        case dtlsChunk = "dtls-chunk"
    }

    /// How a connection is established (RFC 9622 section 7).
    public enum Role: String, Sendable, Hashable {
        /// Active open: `Preconnection.initiate()`.
        case initiate
        /// Passive open: `Preconnection.listen()`.
        case listen
        /// Peer to peer: `Preconnection.rendezvous()`.
        case rendezvous
    }

    /// True when the top layer delivers a byte stream (a framer is needed for message boundaries).
    public var isByteStream: Bool { layers.last?.service == .byteStream }

    /// The stack's name.
    public var description: String { name }

    init(name: String, layers: [LayerKind], features: TransportFeatures, security: SecurityProtocol?,
         roles: Set<Role>, sendHighWater: Int = 4 * 1024 * 1024, restrictions: [FeatureRestriction] = []) {
        self.name = name
        self.layers = layers
        self.features = features
        self.security = security
        self.roles = roles
        self.sendHighWater = sendHighWater
        self.restrictions = restrictions
    }

    /// The registered stack with the same layers less the security protocol (tls-sctp: sctp), which
    /// a plain stream of a secured association reports.
    var withoutSecurity: ProtocolStack {
        let plain = layers.filter { $0.security == nil }
        return StackRegistry.standard.stacks.first { $0.layers == plain } ?? self
    }

    /// The reason the stack gives for lacking `feature`, if it gives one.
    func restriction(on feature: TransportFeatures) -> String? {
        restrictions.first { !$0.features.isDisjoint(with: feature) }?.reason
    }

    /// TCP (libuv): a reliable, ordered byte stream.
    public static let tcp = ProtocolStack(
        name: "tcp", layers: [.tcp],
        features: [.reliableTransfer, .orderedDelivery, .fullChecksumSend, .fullChecksumReceive,
                   .congestionControl, .keepAlive, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen])

    /// UDP (libuv): datagrams, unreliable and unordered.
    public static let udp = ProtocolStack(
        name: "udp", layers: [.udp],
        features: [.messageBoundaries, .fullChecksumSend, .fullChecksumReceive, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen, .rendezvous])

    /// TLS 1.2 / 1.3 (OpenSSL) over TCP: a secure, reliable, ordered byte stream.
    public static let tlsTCP = ProtocolStack(
        name: "tls-tcp", layers: [.tcp, .tls],
        features: tcp.features, security: .tls, roles: [.initiate, .listen], sendHighWater: 512 * 1024)

    /// SCTP (usrsctp) over UDP (RFC 6951): reliable or partially reliable messages on several streams
    /// of one association; each Connection is a stream and `clone()` opens the next.
    public static let sctp = ProtocolStack(
        name: "sctp", layers: [.udp, .sctp],
        features: [.reliableTransfer, .messageBoundaries, .perMessageReliability, .orderedDelivery, .multistreaming,
                   .fullChecksumSend, .fullChecksumReceive, .congestionControl, .keepAlive, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen])

    /// TLS over SCTP (RFC 3436): each Connection is one bidirectional SCTP stream carrying its own
    /// TLS connection, each TLS record one user message; `clone()` opens the next stream and resumes
    /// the group's session by `sctp.tlsHandshakes`. A byte stream per stream (a framer adds message
    /// boundaries); streams never head-of-line block each other.
    public static let tlsSCTP = ProtocolStack(
        name: "tls-sctp", layers: [.udp, .sctp, .tls],
        features: [.reliableTransfer, .orderedDelivery, .multistreaming, .fullChecksumSend, .fullChecksumReceive,
                   .congestionControl, .keepAlive, .activeReadBeforeSend],
        security: .tls, roles: [.initiate, .listen], sendHighWater: 128 * 1024,
        restrictions: [
            FeatureRestriction(features: .perMessageReliability,
                               reason: "RFC 3436 section 4.3.2: TLS records on an SCTP stream must not be unordered or have limited lifetimes"),
            FeatureRestriction(features: .messageBoundaries,
                               reason: "TLS is a byte stream on each SCTP stream (RFC 3436); a framer adds message boundaries"),
        ])

    /// SCTP with every packet protected by the DTLS chunk (draft-ietf-tsvwg-sctp-dtls-chunk): the
    /// association's chunks, control and data alike, travel in one DTLS 1.3 record per packet, keyed
    /// by pre-shared parameters (KMId 0, `SecurityParameters.dtlsChunkKeys`). Everything sctp offers,
    /// association-wide protection below it.
    public static let dtlsChunkSCTP = ProtocolStack(
        name: "dtls-chunk-sctp", layers: [.udp, .dtlsChunk, .sctp],
        features: sctp.features, security: .dtlsChunk, roles: [.initiate, .listen])

    /// DTLS 1.2 (OpenSSL) over UDP: secure datagrams, with a cookie exchange on listeners.
    public static let dtlsUDP = ProtocolStack(
        name: "dtls-udp", layers: [.udp, .dtls],
        features: [.messageBoundaries, .fullChecksumSend, .fullChecksumReceive, .activeReadBeforeSend],
        security: .dtls, roles: [.initiate, .listen])
}

extension ProtocolStack.LayerKind {
    /// The service this layer gives the one above it.
    var service: LayerService {
        switch self {
        case .tcp, .tls: return .byteStream
        case .sctp: return .orderedMessages
        case .udp, .dtls, .dtlsChunk: return .datagrams
        }
    }

    /// The security protocol this layer adds, if it is one.
    var security: SecurityProtocol? {
        switch self {
        case .tls: return .tls
        case .dtls: return .dtls
        case .dtlsChunk: return .dtlsChunk
        case .tcp, .udp, .sctp: return nil
        }
    }

    /// This layer holds an association whose streams carry the connections of a group, so a clone
    /// opens a stream of it instead of a new connection.
    var opensStreams: Bool { self == .sctp }

    /// Whether this layer can run over a layer giving `below`: TLS needs reliable, ordered delivery
    /// (a byte stream, or one SCTP stream's ordered messages, RFC 3436 section 3); DTLS and SCTP
    /// (RFC 6951) need datagrams; TCP and UDP are bottom layers.
    func canStand(on below: LayerService) -> Bool {
        switch self {
        case .tls: return below == .byteStream || below == .orderedMessages
        case .dtls, .sctp, .dtlsChunk: return below == .datagrams
        case .tcp, .udp: return false
        }
    }
}

/// The stacks this build offers, in their default order of preference.
public struct StackRegistry: Sendable {
    /// The stacks, in their default order of preference.
    public var stacks: [ProtocolStack]

    /// A registry of `stacks`, in order of preference.
    public init(stacks: [ProtocolStack]) { self.stacks = stacks }

    /// Every stack of this build: tls-tcp, dtls-udp, tcp, udp, sctp, tls-sctp, dtls-chunk-sctp.
    public static let standard = StackRegistry(stacks: [.tlsTCP, .dtlsUDP, .tcp, .udp, .sctp, .tlsSCTP, .dtlsChunkSCTP])

    /// The stack of `name` (any case), or nil.
    public func stack(named name: String) -> ProtocolStack? {
        stacks.first { $0.name == name.lowercased() }
    }
}
