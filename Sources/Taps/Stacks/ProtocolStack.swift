/// A protocol stack as data: its layers bottom-up, what it provides, and its security protocol.
/// Selection and racing read only these fields; nothing switches on a stack's name.
public struct ProtocolStack: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase name used on command lines: tcp, udp, tls-tcp, dtls-udp.
    public let name: String
    public let layers: [LayerKind]
    public let features: TransportFeatures
    public let security: SecurityProtocol?
    public let roles: Set<Role>
    /// How much application data a Connection on this stack lets wait in user space, beyond what
    /// the kernel or usrsctp buffers, before `send` suspends (back-pressure). Chosen by measurement
    /// (Docs/Benchmarks.md, session 6): 512 KB on TLS/TCP, 4 MB elsewhere.
    /// - TLS/TCP: at 4 MB the sender in taps-bench idled ~12 % of the time while its receiver worked
    ///   through a backlog; at 512 KB it never waits, as the C client never does. Against the C
    ///   baseline, medians of 6 alternating runs in three A/Bs: 0.79 / 0.89 / 0.91 at 4 MB, 1.07 /
    ///   1.07 / 0.99 at 512 KB (256 KB 1.04, 1 MB 0.93, 2 MB 0.95).
    /// - TCP: 512 KB did not help (0.99 -> 0.94 of the baseline over 12 runs each, within what
    ///   plain TCP's runs move by), so it keeps 4 MB.
    /// - SCTP: its send queue is where connPriority and msgPriority reorder what waits; a deeper
    ///   queue gives a more important message more to overtake.
    public let sendHighWater: Int

    public enum LayerKind: String, Sendable, Hashable {
        case tcp, udp, tls, dtls, sctp
    }

    public enum Role: String, Sendable, Hashable { case initiate, listen, rendezvous }

    /// True when the top layer delivers a byte stream (a framer is needed for message boundaries).
    public var isByteStream: Bool { layers.last?.service == .byteStream }

    public var description: String { name }

    init(name: String, layers: [LayerKind], features: TransportFeatures, security: SecurityProtocol?,
         roles: Set<Role>, sendHighWater: Int = 4 * 1024 * 1024) {
        self.name = name
        self.layers = layers
        self.features = features
        self.security = security
        self.roles = roles
        self.sendHighWater = sendHighWater
    }

    public static let tcp = ProtocolStack(
        name: "tcp", layers: [.tcp],
        features: [.reliableTransfer, .orderedDelivery, .fullChecksumSend, .fullChecksumReceive,
                   .congestionControl, .keepAlive, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen])

    public static let udp = ProtocolStack(
        name: "udp", layers: [.udp],
        features: [.messageBoundaries, .fullChecksumSend, .fullChecksumReceive, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen, .rendezvous])

    public static let tlsTCP = ProtocolStack(
        name: "tls-tcp", layers: [.tcp, .tls],
        features: tcp.features, security: .tls, roles: [.initiate, .listen], sendHighWater: 512 * 1024)

    /// SCTP (usrsctp) over UDP (RFC 6951): reliable or partially reliable messages on several streams
    /// of one association; each Connection is a stream and `clone()` opens the next.
    public static let sctp = ProtocolStack(
        name: "sctp", layers: [.udp, .sctp],
        features: [.reliableTransfer, .messageBoundaries, .perMessageReliability, .orderedDelivery, .multistreaming,
                   .fullChecksumSend, .fullChecksumReceive, .congestionControl, .activeReadBeforeSend],
        security: nil, roles: [.initiate, .listen])

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
        case .udp, .dtls: return .datagrams
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
        case .dtls, .sctp: return below == .datagrams
        case .tcp, .udp: return false
        }
    }
}

/// The stacks this build offers, in their default order of preference.
public struct StackRegistry: Sendable {
    public var stacks: [ProtocolStack]

    public init(stacks: [ProtocolStack]) { self.stacks = stacks }

    public static let standard = StackRegistry(stacks: [.tlsTCP, .dtlsUDP, .tcp, .udp, .sctp])

    public func stack(named name: String) -> ProtocolStack? {
        stacks.first { $0.name == name.lowercased() }
    }
}
