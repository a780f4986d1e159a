import CUsrSCTP
import Glibc

/// The listening side of the SCTP stack: one usrsctp socket listening on the SCTP port for every
/// peer, and one `SCTPPath` per remote UDP address on the listener's shared UDP socket. usrsctp
/// demultiplexes the packets of each path by ports and verification tag, answers INITs statelessly
/// (state cookie, RFC 9260 section 5.1.3) and hands established associations to `accept`. Loop thread only.
final class SCTPAcceptor {
    private let socket: SCTPSocket
    private let options: SCTPOptions
    private let loop: EventLoop
    private var paths: [SocketAddress: SCTPPath] = [:]
    private var acceptScheduled = false
    /// An association came up; its first stream is open.
    var onAssociation: ((SCTPAssociation) -> Void)?

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

    deinit { socket.close() }

    /// A datagram from `sender`: its path carries it to usrsctp, made on first contact.
    func deliver(_ bytes: UnsafeRawBufferPointer, from sender: SocketAddress, makeLayer: (SocketAddress) -> UDPLayer) {
        let path: SCTPPath
        if let known = paths[sender] {
            path = known
        } else {
            path = SCTPPath(over: makeLayer(sender))
            paths[sender] = path
            path.start()
        }
        path.layerDidRead(bytes)
    }

    /// The peer's UDP layer closed (its association ended).
    func peerClosed(_ sender: SocketAddress) {
        paths[sender] = nil
    }

    func stop() {
        socket.close()
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
            guard let path = paths.values.first(where: { $0.handle == address.sconn_addr }),
                  let wrapped = try? SCTPSocket(accepted: accepted) else {
                usrsctp_close(accepted)
                continue
            }
            let association = SCTPAssociation(accepted: wrapped, path: path, options: options, loop: loop)
            onAssociation?(association)
        }
    }
}
