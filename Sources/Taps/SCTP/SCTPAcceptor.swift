internal import CUsrSCTP
import Glibc
import Synchronization

/// The listening side of the SCTP stack: one usrsctp socket listening on the SCTP port for every
/// peer, and one `SCTPPath` per remote UDP address on the listener's shared UDP socket. usrsctp
/// demultiplexes the packets of each path by ports and verification tag, answers INITs statelessly
/// (state cookie, RFC 9260 section 5.1.3) and hands established associations to `accept`. Loop thread only.
final class SCTPAcceptor {
    private let socket: SCTPSocket
    private let options: SCTPOptions
    private let loop: EventLoop
    private var paths: [SocketAddress: SCTPPath] = [:]
    /// Paths no association has come from yet, with when they were made (loop milliseconds). They are
    /// closed after `options.associationSetupTimeout`, and there are at most
    /// `options.maximumUnestablishedPeers`, so INITs or garbage from many addresses cannot pile up state.
    private var unestablished: [SocketAddress: UInt64] = [:]
    private var reaper: UVTimer?
    /// Datagrams from new addresses dropped because that many were already waiting, process-wide
    /// (tests and diagnostics read it, as `SCTPPath`'s drop counters).
    static let refusedNewPeerDatagrams = Atomic<Int>(0)
    /// Datagrams from addresses without a path that do not begin an association, process-wide.
    static let outOfTheBlueDatagrams = Atomic<Int>(0)
    private var acceptScheduled = false
    /// An association came up; its first stream is open.
    var onAssociation: ((SCTPAssociation) -> Void)?
    /// Stacks with the DTLS chunk: each peer's path gets a responder filter. One tie-breaker key for
    /// the listener keeps it stateless per INIT.
    var dtlsChunk: DTLSChunkSettings?
    /// The packet capture of every association it accepts.
    var capture: SCTPCapture?
    /// Where the accepted associations' packets are counted.
    var metrics: StackMetrics?
    private let tieBreakerKey = DTLSChunkPathFilter.randomTieBreakerKey()

    init(port: UInt16, options: SCTPOptions, loop: EventLoop) throws(TransportError) {
        self.options = options
        self.loop = loop
        socket = try SCTPSocket(streams: options.streams, options: options)
        try socket.bind(nil, port: port)
        guard usrsctp_listen(socket.raw, 128) == 0 else { throw .io("SCTP listen: \(String(cString: strerror(errno)))") }
        socket.setUpcall({ _, argument, _ in
            guard let argument else { return }
            Unmanaged<SCTPAcceptor>.fromOpaque(argument).takeUnretainedValue().scheduleAccept()
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        reaper?.close()
        socket.close()
    }

    /// A datagram from `sender`: its path carries it to usrsctp, made on first contact.
    func deliver(_ bytes: UnsafeRawBufferPointer, from sender: SocketAddress, makeLayer: (SocketAddress) -> UDPLayer) {
        let path: SCTPPath
        if let known = paths[sender] {
            path = known
        } else {
            // Only an INIT starts an association (RFC 9260 section 5.1); anything else from a peer
            // without a path is out of the blue, e.g. the last packets of an association that has
            // just ended, and would otherwise hold an unestablished path until the setup timeout.
            guard SCTPHandshakeChunks.firstChunkType(bytes) == SCTPHandshakeChunks.initType else {
                Self.outOfTheBlueDatagrams.add(1, ordering: .relaxed)
                return
            }
            guard unestablished.count < options.maximumUnestablishedPeers else {
                Self.refusedNewPeerDatagrams.add(1, ordering: .relaxed)
                return
            }
            path = SCTPPath(over: makeLayer(sender))
            path.chunkFilter = dtlsChunk?.makeFilter(side: .responder(tieBreakerKey: tieBreakerKey))
            path.capture = capture.map { SCTPPathCapture($0, lower: path.lower) }
            path.metrics = metrics
            paths[sender] = path
            unestablished[sender] = loop.nowMilliseconds
            startReaper()
            path.start()
        }
        path.layerDidRead(bytes)
    }

    /// The peer's UDP layer closed (its association ended, or its path was reaped).
    func peerClosed(_ sender: SocketAddress) {
        paths[sender] = nil
        unestablished[sender] = nil
    }

    func stop() {
        reaper?.close()
        reaper = nil
        socket.close()
    }

    private func startReaper() {
        guard reaper == nil else { return }
        let period = UInt64(max(10, min(1_000, options.associationSetupTimeout.milliseconds)))
        let reaper = UVTimer(loop: loop)
        self.reaper = reaper
        reaper.start(after: period, repeat: period) { [weak self] in self?.reap() }
    }

    /// Closes the paths no association came from in time; closing one ends in `peerClosed`.
    private func reap() {
        let now = loop.nowMilliseconds
        let timeout = UInt64(max(0, options.associationSetupTimeout.milliseconds))
        let expired = unestablished.filter { now - $0.value >= timeout }.map(\.key)
        for sender in expired {
            unestablished[sender] = nil
            paths[sender]?.close()
            paths[sender] = nil
        }
        if unestablished.isEmpty {
            reaper?.close()
            reaper = nil
        }
    }

    private func scheduleAccept() {
        guard !acceptScheduled else { return }
        acceptScheduled = true
        let me = LoopBound(self)
        loop.execute { me.value?.acceptAll() }
    }

    private func acceptAll() {
        acceptScheduled = false
        while true {
            var address = sockaddr_conn()
            var length = socklen_t(MemoryLayout<sockaddr_conn>.size)
            let accepted = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { usrsctp_accept(socket.raw, $0, &length) }
            }
            guard let accepted else { return }
            guard let (sender, path) = paths.first(where: { $0.value.handle == address.sconn_addr }),
                  let wrapped = try? SCTPSocket(accepted: accepted) else {
                usrsctp_close(accepted)
                continue
            }
            if let filter = path.chunkFilter, case .failure = filter.readiness {
                // The DTLS chunk was required and not agreed: the association never reaches the application.
                wrapped.close(abort: true)
                continue
            }
            unestablished[sender] = nil
            let association = SCTPAssociation(accepted: wrapped, path: path, options: options, loop: loop)
            onAssociation?(association)
        }
    }
}
