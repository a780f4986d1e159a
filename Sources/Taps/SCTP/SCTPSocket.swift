internal import CUsrSCTP
import Glibc

/// A usrsctp socket in AF_CONN mode, one-to-one style (RFC 6458 section 4), non-blocking, with its
/// upcall. Only option plumbing lives here; the association decides what to do. Loop thread only.
final class SCTPSocket {
    let raw: OpaquePointer
    private let runtime: SCTPRuntime
    private var closed = false

    /// A new socket configured for the association layer: no Nagle, explicit end-of-record (large
    /// messages go in pieces), receive info on every read, the notifications the layer handles,
    /// stream reset allowed, the priority stream scheduler, and `streams` in each direction (outgoing:
    /// `options.outboundStreams` when set).
    init(runtime: SCTPRuntime = .shared, streams: UInt16, options: SCTPOptions = SCTPOptions()) throws(TransportError) {
        guard let raw = usrsctp_socket(AF_CONN, Self.streamSocketType, Int32(IPPROTO_SCTP), nil, nil, 0, nil) else {
            throw .io("usrsctp_socket failed: \(String(cString: strerror(errno)))")
        }
        self.raw = raw
        self.runtime = runtime
        runtime.socketOpened()
        try configure(outbound: options.outboundStreams ?? streams, inbound: streams)
        try configureRetransmission(options)
        // Before any association exists, so usrsctp starts it with this MTU: it only ever lowers the
        // association's smallest MTU later, and its Nagle and bundling decisions use that one.
        setPathParameters(options)
    }

    /// Wraps a socket usrsctp_accept returned.
    init(accepted raw: OpaquePointer, runtime: SCTPRuntime = .shared) throws(TransportError) {
        self.raw = raw
        self.runtime = runtime
        runtime.socketOpened()
        usrsctp_set_non_blocking(raw, 1)
    }

    deinit { close() }

    /// SOCK_STREAM (one-to-one style). Spelled out: Glibc's enum is not always visible beside usrsctp's headers.
    private static let streamSocketType: Int32 = 1

    private func configure(outbound: UInt16, inbound: UInt16) throws(TransportError) {
        usrsctp_set_non_blocking(raw, 1)
        try set(SCTP_NODELAY, Int32(1))
        try set(SCTP_EXPLICIT_EOR, Int32(1))
        try set(SCTP_RECVRCVINFO, Int32(1))
        try set(SCTP_INITMSG, sctp_initmsg(sinit_num_ostreams: outbound, sinit_max_instreams: inbound, sinit_max_attempts: 5, sinit_max_init_timeo: 2000))
        try set(SCTP_ENABLE_STREAM_RESET, sctp_assoc_value(assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), assoc_value: UInt32(SCTP_ENABLE_RESET_STREAM_REQ)))
        try set(SCTP_PLUGGABLE_SS, sctp_assoc_value(assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), assoc_value: UInt32(SCTP_SS_PRIORITY)))
        for type in [SCTP_ASSOC_CHANGE, SCTP_PEER_ADDR_CHANGE, SCTP_SHUTDOWN_EVENT, SCTP_STREAM_RESET_EVENT,
                     SCTP_STREAM_CHANGE_EVENT] {
            try set(SCTP_EVENT, sctp_event(se_assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), se_type: UInt16(type), se_on: 1))
        }
        let buffer = Int32(4 * 1024 * 1024)
        _ = withUnsafePointer(to: buffer) { usrsctp_setsockopt(raw, SOL_SOCKET, SO_SNDBUF, $0, socklen_t(MemoryLayout<Int32>.size)) }
        _ = withUnsafePointer(to: buffer) { usrsctp_setsockopt(raw, SOL_SOCKET, SO_RCVBUF, $0, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// SCTP_RTOINFO; zero fields keep usrsctp's values.
    private func configureRetransmission(_ options: SCTPOptions) throws(TransportError) {
        if let retransmissions = options.maximumRetransmissions {
            var info = sctp_assocparams()
            info.sasoc_assoc_id = sctp_assoc_t(SCTP_FUTURE_ASSOC)
            info.sasoc_asocmaxrxt = UInt16(clamping: max(1, retransmissions))
            try set(SCTP_ASSOCINFO, info)
        }
        let bounds = [options.retransmissionTimeoutInitial, options.retransmissionTimeoutMaximum, options.retransmissionTimeoutMinimum]
        guard bounds.contains(where: { $0 != nil }) else { return }
        let milliseconds = bounds.map { $0.map { UInt32(clamping: max(1, $0.milliseconds)) } ?? 0 }
        try set(SCTP_RTOINFO, sctp_rtoinfo(srto_assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), srto_initial: milliseconds[0],
                                           srto_max: milliseconds[1], srto_min: milliseconds[2]))
    }

    func set<T>(_ option: Int32, _ value: T) throws(TransportError) {
        let status = withUnsafePointer(to: value) { usrsctp_setsockopt(raw, Int32(IPPROTO_SCTP), option, $0, socklen_t(MemoryLayout<T>.size)) }
        guard status == 0 else { throw .io("SCTP socket option \(option): \(String(cString: strerror(errno)))") }
    }

    /// Path MTU discovery off; the configured MTU less IPv6 and UDP headers is the SCTP packet size.
    /// With them, the heartbeat interval and the path's retransmission limit when set. Applies to the
    /// association and to every path of it (the AF_CONN wildcard address).
    func setPathParameters(_ options: SCTPOptions) {
        var parameters = sctp_paddrparams()
        parameters.spp_assoc_id = sctp_assoc_t(SCTP_FUTURE_ASSOC)
        parameters.spp_flags = UInt32(SPP_PMTUD_DISABLE)
        parameters.spp_pathmtu = UInt32(max(SCTPOptions.minimumPathMTU, options.pathMTU) - SCTPOptions.headerOverhead)
        if let interval = options.heartbeatInterval {
            parameters.spp_flags |= UInt32(SPP_HB_ENABLE)
            parameters.spp_hbinterval = UInt32(clamping: max(1, interval.milliseconds))
        }
        if let retransmissions = options.maximumRetransmissions {
            parameters.spp_pathmaxrxt = UInt16(clamping: max(1, retransmissions))
        }
        var wildcard = Self.address(nil, port: 0)
        withUnsafeBytes(of: &wildcard) { source in
            withUnsafeMutableBytes(of: &parameters.spp_address) { $0.copyMemory(from: source) }
        }
        try? set(SCTP_PEER_ADDR_PARAMS, parameters)
    }

    /// Sends a HEARTBEAT on the primary path now (SPP_HB_DEMAND), e.g. to see the peer answer.
    func requestHeartbeat() {
        var status = sctp_status()
        guard get(SCTP_STATUS, &status) else { return }
        var parameters = sctp_paddrparams()
        parameters.spp_address = status.sstat_primary.spinfo_address
        parameters.spp_flags = UInt32(SPP_HB_DEMAND)
        try? set(SCTP_PEER_ADDR_PARAMS, parameters)
    }

    /// SCTP_NODELAY: off lets usrsctp hold small messages to fill a packet while data is in flight.
    /// Whether DATA the peer has not acknowledged is outstanding.
    var hasDataInFlight: Bool {
        var status = sctp_status()
        return get(SCTP_STATUS, &status) && status.sstat_unackdata > 0
    }

    /// The most bytes of a user message one DATA chunk carries (SCTP's fragmentation point, from the
    /// path MTU); nil before the association is up.
    var fragmentationPoint: Int? {
        var status = sctp_status()
        guard get(SCTP_STATUS, &status), status.sstat_fragmentation_point > 0 else { return nil }
        return Int(status.sstat_fragmentation_point)
    }

    /// DATA chunks usrsctp holds for the association: not yet sent, or sent and not acknowledged.
    var outstandingChunks: Int {
        var status = sctp_status()
        return get(SCTP_STATUS, &status) ? Int(status.sstat_unackdata) + Int(status.sstat_penddata) : 0
    }

    /// Only calls into usrsctp when the setting changes.
    func setNoDelay(_ on: Bool) {
        guard on != noDelay else { return }
        noDelay = on
        try? set(SCTP_NODELAY, Int32(on ? 1 : 0))
    }
    private var noDelay = true

    func get<T>(_ option: Int32, _ value: inout T) -> Bool {
        var length = socklen_t(MemoryLayout<T>.size)
        return withUnsafeMutablePointer(to: &value) { usrsctp_getsockopt(raw, Int32(IPPROTO_SCTP), option, $0, &length) } == 0
    }

    /// The AF_CONN address of `handle` at `port`.
    static func address(_ handle: UnsafeMutableRawPointer?, port: UInt16) -> sockaddr_conn {
        var address = sockaddr_conn()
        address.sconn_family = UInt16(AF_CONN)
        address.sconn_port = port.bigEndian
        address.sconn_addr = handle
        return address
    }

    func bind(_ handle: UnsafeMutableRawPointer?, port: UInt16) throws(TransportError) {
        var address = Self.address(handle, port: port)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { usrsctp_bind(raw, UnsafeMutablePointer(mutating: $0), socklen_t(MemoryLayout<sockaddr_conn>.size)) }
        }
        guard status == 0 else {
            throw errno == EADDRINUSE ? .addressInUse("SCTP port \(port) is in use in this process")
                                      : .io("SCTP bind to port \(port): \(String(cString: strerror(errno)))")
        }
    }

    /// Starts the association (non-blocking: it completes with an SCTP_COMM_UP notification).
    func connect(_ handle: UnsafeMutableRawPointer, port: UInt16) throws(TransportError) {
        var address = Self.address(handle, port: port)
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { usrsctp_connect(raw, UnsafeMutablePointer(mutating: $0), socklen_t(MemoryLayout<sockaddr_conn>.size)) }
        }
        guard status == 0 || errno == EINPROGRESS else { throw .io("SCTP connect: \(String(cString: strerror(errno)))") }
    }

    func setUpcall(_ upcall: @escaping @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void, _ argument: UnsafeMutableRawPointer?) {
        usrsctp_set_upcall(raw, upcall, argument)
    }

    /// Closes the socket. With `abort`, SO_LINGER 0 makes usrsctp send an ABORT chunk.
    func close(abort: Bool = false) {
        guard !closed else { return }
        closed = true
        usrsctp_set_upcall(raw, nil, nil)
        if abort {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            _ = usrsctp_setsockopt(raw, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        }
        usrsctp_close(raw)
        runtime.socketClosed()
    }
}
