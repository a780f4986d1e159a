/// The bottom layer of UDP-based stacks. Either it owns a connected socket (initiate, rendezvous) or
/// it shares a listener's socket and sends to one peer (a listener's per-peer connection). Each
/// `write` is one datagram. Loop thread only.
final class UDPLayer: Layer {
    weak var delegate: LayerDelegate?
    private let socket: UVUDPSocket
    private let ownsSocket: Bool
    private let peer: SocketAddress
    private var reading = true
    private var started = false
    private let onClose: (() -> Void)?
    /// Listener peers: when the listener last routed a datagram here (loop milliseconds).
    var lastActivity: UInt64 = 0

    static let maximumDatagram = 65_507

    /// Owns a new socket bound to `local` (or an ephemeral port) and connected to `peer`.
    init(loop: EventLoop, local: SocketAddress?, peer: SocketAddress) throws(TransportError) {
        socket = UVUDPSocket(loop: loop)
        ownsSocket = true
        self.peer = peer
        onClose = nil
        do {
            if let local { try socket.bind(local) }
            try socket.connect(peer)
        } catch {
            socket.close()
            throw error
        }
    }

    /// Shares a listener's socket; the listener routes this peer's datagrams to `deliver`.
    init(sharing socket: UVUDPSocket, peer: SocketAddress, onClose: @escaping () -> Void) {
        self.socket = socket
        ownsSocket = false
        self.peer = peer
        self.onClose = onClose
    }

    deinit {
        if ownsSocket { socket.close() }
    }

    var service: LayerService { .datagrams }
    var maximumMessageSize: Int? { Self.maximumDatagram }

    func start() {
        started = true
        if ownsSocket {
            socket.onDatagram = { [weak self] bytes, _ in self?.deliver(bytes) }
            socket.onReceiveError = { [weak self] error in
                // ICMP errors (port unreachable) surface here on connected sockets: soft errors.
                self?.delegate?.layerDidReportSoftError(error)
            }
            if reading { socket.startReceiving() }
        }
        delegate?.layerDidBecomeReady()
    }

    /// Listener peers: the peer has been silent too long; the layers above fail with `error`.
    func expire(_ error: TransportError) {
        delegate?.layerDidFail(error)
    }

    /// Hands one received datagram up (called by the listener for shared sockets).
    func deliver(_ bytes: UnsafeRawBufferPointer) {
        guard reading, started else { return }
        delegate?.layerDidRead(bytes)
    }

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        guard bytes.count <= Self.maximumDatagram else {
            completion?(.messageTooLarge("\(bytes.count) bytes exceed the largest UDP datagram (\(Self.maximumDatagram))"))
            return
        }
        socket.send(bytes, to: peer, completion: completion)
    }

    func finishWriting(completion: @escaping (TransportError?) -> Void) { completion(nil) }

    func setReading(_ enabled: Bool) {
        reading = enabled
        guard ownsSocket, started else { return }
        if enabled { socket.startReceiving() } else { socket.stopReceiving() }
    }

    func abort() { close() }

    func close() {
        if ownsSocket { socket.close() } else { onClose?() }
    }

    var localAddress: SocketAddress? { socket.localAddress }
    var remoteAddress: SocketAddress? { peer }
}
