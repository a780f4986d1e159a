/// A protocol stack as data: its layers bottom-up, what it provides, and its security protocol.
/// Selection and racing read only these fields; nothing switches on a stack's name.
public struct ProtocolStack: Sendable, Hashable, CustomStringConvertible {
    /// Lowercase name used on command lines: tcp, udp, tls-tcp, dtls-udp.
    public let name: String
    public let layers: [LayerKind]
    public let features: TransportFeatures
    public let security: SecurityProtocol?
    public let roles: Set<Role>

    public enum LayerKind: String, Sendable, Hashable {
        case tcp, udp, tls, dtls, sctp
    }

    public enum Role: String, Sendable, Hashable { case initiate, listen, rendezvous }

    /// True when the bottom layer delivers a byte stream (a framer is needed for message boundaries).
    public var isByteStream: Bool { layers.first == .tcp }

    public var description: String { name }

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
        features: tcp.features, security: .tls, roles: [.initiate, .listen])

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

/// The stacks this build offers, in their default order of preference.
public struct StackRegistry: Sendable {
    public var stacks: [ProtocolStack]

    public init(stacks: [ProtocolStack]) { self.stacks = stacks }

    public static let standard = StackRegistry(stacks: [.tlsTCP, .dtlsUDP, .tcp, .udp, .sctp])

    public func stack(named name: String) -> ProtocolStack? {
        stacks.first { $0.name == name.lowercased() }
    }
}
