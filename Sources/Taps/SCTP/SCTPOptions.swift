/// Settings of the SCTP stacks (`TransportProperties.sctp`).
public struct SCTPOptions: Sendable, Hashable {
    /// Streams asked for in each direction (SCTP_INITMSG); the association uses the smaller of ours
    /// and the peer's. Each Connection of a group is one stream.
    public var streams: UInt16 = 32
    /// Outgoing streams asked for, when they differ from the incoming ones (`streams`). Streams the
    /// peer sends on beyond the association's outgoing ones have no partner back (RFC 3436 section
    /// 3.1: unidirectional), and tls-sctp refuses TLS on them.
    public var outboundStreams: UInt16? = nil
    /// The largest IP packet on the path, in bytes. 1280 (the IPv6 minimum) suits real networks;
    /// loopback benchmarks use more. SCTP packets are this less IPv6 and UDP headers.
    public var pathMTU: Int = 1280
    /// UDP port of the peer's SCTP-over-UDP encapsulation (RFC 6951); nil: the remote endpoint's
    /// port, which is also the SCTP port. 9899 is RFC 6951's registered port.
    public var remoteUDPPort: UInt16? = nil
    /// Local UDP port for the encapsulation; nil: the local endpoint's port (listeners) or an
    /// ephemeral one (clients).
    public var localUDPPort: UInt16? = nil

    /// The largest message accepted from the peer; a larger one ends the association (a peer cannot
    /// make us buffer without bound).
    public var maximumReceiveMessageSize: Int = 64 * 1024 * 1024

    /// Listeners: how long the UDP path of a peer is kept when no association comes from it (its
    /// INIT made the path; its COOKIE ECHO would make the association). Bounds the state that
    /// INITs or garbage from many addresses can leave behind.
    public var associationSetupTimeout: Duration = .seconds(10)
    /// Listeners: at most this many such peers at once; datagrams from further new addresses are
    /// dropped until some complete or time out.
    public var maximumUnestablishedPeers: Int = 1024

    /// Retransmission timeout bounds and start value (RFC 9260 section 6.3.1; defaults 1 s, 60 s,
    /// 3 s). Paths with known short round trips (a data centre, loopback tests under loss) recover
    /// faster with smaller values. Nil keeps usrsctp's.
    public var retransmissionTimeoutMinimum: Duration? = nil
    /// RTO.Max.
    public var retransmissionTimeoutMaximum: Duration? = nil
    /// RTO.Initial.
    public var retransmissionTimeoutInitial: Duration? = nil

    /// tls-sctp: how the TLS handshakes of a group's streams go (RFC 3436 section 5).
    public var tlsHandshakes: TLSHandshakes = .resumeFirst

    /// tls-sctp listeners: a stream the client opens after the first whose first message is not a
    /// TLS handshake record carries plain SCTP user data (RFC 3436 section 4.3.1; the client asks
    /// for it with `clone(security: .disabled)`) and becomes a connection of the `sctp` stack, with
    /// no security details. Off by default: every stream must then do TLS, and one that does not
    /// fails alone as a protocol violation.
    public var plainStreams = false

    /// When each stream of a tls-sctp association does its TLS handshake, and whether it resumes
    /// (RFC 3436 section 5). Whatever the pattern, a session from an earlier association (the
    /// session cache, or `SecurityParameters.resumptionSession`) is offered on every stream, so a
    /// group can open with no full handshake at all (section 5.4).
    public enum TLSHandshakes: String, Sendable, Hashable, CaseIterable {
        /// Every stream starts its handshake as soon as it is opened; without an earlier session
        /// each one is a full handshake (section 5.1).
        case parallel
        /// The first stream does a full handshake; streams opened later wait for its session and
        /// resume it (section 5.2).
        case resumeFirst
        /// As `resumeFirst`, but a cloned stream starts its handshake only when the application
        /// first sends on it (section 5.3): the connection is ready at once, what it sends waits
        /// for the handshake, and an unused stream costs no handshake.
        case delayed
    }

    /// Heartbeats on an idle path (RFC 9260 section 8.3), so a peer that vanished is noticed even by
    /// an end that only receives; nil keeps usrsctp's (30 s). `keepAlive` with `keepAliveTimeout`
    /// sets it.
    public var heartbeatInterval: Duration? = nil
    /// Retransmissions, of data or heartbeats, after which the peer is taken for dead and the
    /// association ends (Association.Max.Retrans and Path.Max.Retrans, RFC 9260 section 8); nil
    /// keeps usrsctp's (10 and 5). `connTimeout` sets it with the retransmission timeouts.
    public var maximumRetransmissions: Int? = nil

    /// dtls-chunk-sctp: after the SCTP handshake each end waits this long for a packet of the peer
    /// that authenticates with its keys (it asks for one with a HEARTBEAT); none means the two ends'
    /// keys differ, and the association fails with `handshakeFailed`.
    public var dtlsChunkKeyConfirmationTimeout: Duration = .seconds(5)

    /// How long a closing association may go without any of its data acknowledged before it is
    /// aborted (a peer that keeps its window shut or never answers the SHUTDOWN). Tests shorten it.
    var closeStallLimit: Duration = .seconds(30)

    /// IPv6 (40) and UDP (8) headers.
    static let headerOverhead = 48

    /// Bytes of chunks that fit one packet: the SCTP packet less its common header (12), less a margin
    /// that keeps our bundling (SCTPSendQueue) below usrsctp's own Nagle threshold.
    var packetCapacity: Int { max(Self.minimumPathMTU, pathMTU) - Self.headerOverhead - 12 - 64 }
    static let minimumPathMTU = 576

    /// usrsctp's defaults, 32 streams each way and a 1,280-byte path MTU.
    public init() {}
}
