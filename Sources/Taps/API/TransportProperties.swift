/// Selection and connection properties (RFC 9622 sections 6.2 and 8.1).
///
/// Selection properties carry a `Preference` and decide which protocol stacks qualify; connection
/// properties tune the connection that results. Defaults are the RFC's.
public struct TransportProperties: Sendable, Hashable {
    // MARK: Selection properties (RFC 9622 section 6.2)

    /// 6.2.1: reliable data transfer.
    public var reliability: Preference = .require
    /// 6.2.2: message boundaries are preserved (a framer provides them over a byte stream).
    public var preserveMsgBoundaries: Preference = .noPreference
    /// 6.2.3: per-message reliability can be configured.
    public var perMsgReliability: Preference = .noPreference
    /// 6.2.4: data arrives in the order sent.
    public var preserveOrder: Preference = .require
    /// 6.2.5: 0-RTT establishment with safely replayable messages.
    public var zeroRttMsg: Preference = .noPreference
    /// 6.2.6: connections in a group share one transport association (streams).
    ///
    /// RFC 9622's default is `prefer`; ours is `noPreference`: the only multistreaming stack here is
    /// SCTP over UDP encapsulation (RFC 6951), which a peer picked at random does not speak, and
    /// preferring it would delay every plain connection by a racing stagger. Prefer or require it to
    /// opt in.
    public var multistreaming: Preference = .noPreference
    /// 6.2.7 / 6.2.8: full checksum coverage on sending and receiving.
    public var fullChecksumSend: Preference = .require
    /// 6.2.8: received data must be checked against a full checksum.
    public var fullChecksumRecv: Preference = .require
    /// 6.2.9: the transport does congestion control.
    public var congestionControl: Preference = .require
    /// 6.2.10: the transport can send keep-alive packets.
    public var keepAlive: Preference = .noPreference
    /// 6.2.11: interface constraints by name ("lo", "eth0") or type.
    public var interface: [String: Preference] = [:]
    /// 6.2.12: provisioning-domain constraints.
    public var pvd: [String: Preference] = [:]
    /// 6.2.13: temporary (privacy) local addresses; nil means the RFC default (avoid for listeners and
    /// rendezvous, prefer otherwise).
    public var useTemporaryLocalAddress: Preference? = nil
    /// 6.2.14: multipath transport.
    public var multipath: MultipathMode = .disabled
    /// 6.2.15: advertise alternative addresses to the peer.
    public var advertisesAltaddr: Bool = false
    /// 6.2.16: direction of communication.
    public var direction: Direction = .bidirectional
    /// 6.2.17: ICMP soft errors are reported as `softError` events.
    public var softErrorNotify: Preference = .noPreference
    /// 6.2.18: the initiating side is not the first to write.
    public var activeReadBeforeSend: Preference = .noPreference

    // MARK: Connection properties (RFC 9622 section 8.1)

    /// 8.1.2: priority of this connection relative to others in its group (lower is more important).
    public var connPriority: Int = 100
    /// 8.1.3: how long reliable delivery may stall before the connection fails (nil: disabled).
    /// Applied as TCP_USER_TIMEOUT on TCP-based stacks.
    public var connTimeout: Duration? = nil
    /// 8.1.4: interval between keep-alive packets when `keepAlive` is in use (nil: disabled).
    public var keepAliveTimeout: Duration? = nil
    /// 8.1.1: minimum checksum coverage required on receive (nil: full coverage).
    public var recvChecksumLen: Int? = nil
    /// 8.1.6: capacity profile (traffic class).
    public var connCapacityProfile: CapacityProfile = .default
    /// 8.1.9: maximum number of connections in a group (nil: unlimited).
    public var groupConnLimit: Int? = nil
    /// 8.1.10: do not share session state (TLS session cache) with other connections.
    public var isolateSession: Bool = false

    // MARK: Implementation settings

    /// Listeners: how long an incoming connection may take to become established (its TLS or DTLS
    /// handshake) before it is aborted and counted in `failedEstablishments` with `timedOut`, so a
    /// peer that sends half a ClientHello cannot hold a connection open. Nil: no limit.
    public var incomingEstablishmentTimeout: Duration? = .seconds(10)

    /// udp and dtls-udp listeners: a connection made for a peer that has sent nothing for this long
    /// ends with a `connectionError` (`timedOut`). A datagram flow has no end of its own, so a peer
    /// that vanished (or whose close_notify was lost) would otherwise hold its connection, and the
    /// listener's socket after `stop()`, forever. Nil: never.
    public var incomingDatagramIdleTimeout: Duration? = .seconds(120)

    /// Delay between starting successive racing attempts (Happy Eyeballs v2, RFC 8305 section 5).
    public var racingStagger: Duration = .milliseconds(250)
    /// SCTP-specific settings (RFC 9622 allows protocol-specific properties).
    public var sctp = SCTPOptions()
    /// SCTP stacks: write every packet to a pcap file (`PacketCapture.pcap(path)`); nil uses
    /// `TAPS_PCAP` when set (`PacketCapture.environment`).
    public var capture: PacketCapture? = nil

    /// The defaults of RFC 9622 section 6.2: reliable, ordered, congestion controlled, full checksums.
    public init() {}

    /// Whether a connection uses several paths (RFC 9622 section 6.2.14).
    public enum MultipathMode: Sendable, Hashable {
        /// One path only.
        case disabled
        /// Set up and use more paths on its own initiative.
        case active
        /// Use paths the peer sets up, but set up none.
        case passive
    }

    /// Which ways data flows on a connection (RFC 9622 section 6.2.16).
    public enum Direction: Sendable, Hashable {
        /// Both ways.
        case bidirectional
        /// Only from this end to the peer.
        case unidirectionalSend
        /// Only from the peer to this end.
        case unidirectionalReceive
    }

    /// What the application's traffic asks of the network (RFC 9622 section 8.1.6).
    public enum CapacityProfile: Sendable, Hashable {
        /// No particular profile.
        case `default`
        /// Background traffic that yields to everything else.
        case scavenger
        /// Small interactive messages that want low delay.
        case lowLatencyInteractive
        /// Non-interactive traffic that still wants low delay.
        case lowLatencyNonInteractive
        /// Media at a steady rate.
        case constantRateStreaming
        /// Bulk transfer that takes what capacity there is.
        case capacitySeeking
    }

    // MARK: Profiles (RFC 9622 appendix B.2)

    /// B.2.1: reliable, in-order byte stream with congestion control (e.g. TCP).
    public static var reliableInOrderStream: TransportProperties {
        var properties = TransportProperties()
        properties.reliability = .require
        properties.preserveOrder = .require
        properties.congestionControl = .require
        properties.preserveMsgBoundaries = .noPreference
        return properties
    }

    /// B.2.2: reliable, in-order messages with congestion control (e.g. SCTP, or TCP with a framer).
    public static var reliableMessage: TransportProperties {
        var properties = reliableInOrderStream
        properties.preserveMsgBoundaries = .require
        return properties
    }

    /// B.2.3: datagrams without reliability (e.g. UDP).
    public static var unreliableDatagram: TransportProperties {
        var properties = TransportProperties()
        properties.reliability = .avoid
        properties.preserveOrder = .avoid
        properties.congestionControl = .noPreference
        properties.preserveMsgBoundaries = .require
        return properties
    }

    /// The SCTP settings with the connection properties applied (RFC 9622 section 8.1): `keepAlive`
    /// with `keepAliveTimeout` sends heartbeats at that interval; `connTimeout` bounds how long the
    /// association retransmits before it gives up, as four retransmissions with timeouts of at most
    /// a fifth of it each. Settings made in `sctp` itself win.
    var sctpWithConnectionProperties: SCTPOptions {
        var options = sctp
        if keepAlive == .require || keepAlive == .prefer, options.heartbeatInterval == nil {
            options.heartbeatInterval = keepAliveTimeout ?? .seconds(30)
        }
        if let connTimeout {
            let step = max(Duration.milliseconds(10), connTimeout / 5)
            options.maximumRetransmissions = options.maximumRetransmissions ?? 4
            options.retransmissionTimeoutMaximum = options.retransmissionTimeoutMaximum ?? step
            options.retransmissionTimeoutInitial = options.retransmissionTimeoutInitial ?? min(.seconds(3), step)
            options.retransmissionTimeoutMinimum = options.retransmissionTimeoutMinimum ?? min(.seconds(1), step)
        }
        return options
    }

    /// The selection properties that map one-to-one onto a transport feature, with their names as
    /// the RFC spells them (used by selection and in its explanations).
    var featurePreferences: [(name: String, preference: Preference, feature: TransportFeatures)] {
        [
            ("reliability", reliability, .reliableTransfer),
            ("preserveMsgBoundaries", preserveMsgBoundaries, .messageBoundaries),
            ("perMsgReliability", perMsgReliability, .perMessageReliability),
            ("preserveOrder", preserveOrder, .orderedDelivery),
            ("zeroRttMsg", zeroRttMsg, .zeroRTT),
            ("multistreaming", multistreaming, .multistreaming),
            ("fullChecksumSend", fullChecksumSend, .fullChecksumSend),
            ("fullChecksumRecv", fullChecksumRecv, .fullChecksumReceive),
            ("congestionControl", congestionControl, .congestionControl),
            ("keepAlive", keepAlive, .keepAlive),
            ("softErrorNotify", softErrorNotify, .softErrorNotify),
            ("activeReadBeforeSend", activeReadBeforeSend, .activeReadBeforeSend),
        ]
    }
}
