/// The bottom layer of TCP-based stacks: one libuv TCP socket. Loop thread only.
final class TCPLayer: Layer {
    weak var delegate: LayerDelegate?
    let socket: UVTCPSocket
    private let remote: SocketAddress?
    private let options: TCPOptions
    private var reading = true
    private var established: Bool

    struct TCPOptions {
        var keepAliveSeconds: UInt32? = nil
        var userTimeoutMilliseconds: UInt32? = nil
        var readBufferSize = UVTCPSocket.defaultReadBufferSize
        /// Each read goes into a new array handed up whole (plain TCP, whose reads become messages as
        /// they are); off under TLS, which decrypts out of the socket's own buffer.
        var readsIntoArrays = true
    }

    /// A client layer that will connect to `remote` on `start()`.
    init(loop: EventLoop, connectingTo remote: SocketAddress, options: TCPOptions) {
        socket = UVTCPSocket(loop: loop, readBufferSize: options.readBufferSize)
        self.remote = remote
        self.options = options
        established = false
    }

    /// A layer around a socket a listener accepted.
    init(accepted socket: UVTCPSocket, options: TCPOptions) {
        self.socket = socket
        remote = nil
        self.options = options
        established = true
    }

    deinit {
        // A layer released without abort or close must not leave its socket open.
        socket.reset()
    }

    var service: LayerService { .byteStream }

    func start() {
        guard !established, let remote else {
            configureEstablished()
            return
        }
        socket.connect(to: remote) { [weak self] error in
            guard let self else { return }
            if let error {
                self.delegate?.layerDidFail(error)
                return
            }
            self.established = true
            self.configureEstablished()
        }
    }

    private func configureEstablished() {
        socket.setNoDelay(true)
        if let seconds = options.keepAliveSeconds { socket.setKeepAlive(true, delaySeconds: seconds) }
        if let timeout = options.userTimeoutMilliseconds { socket.setUserTimeout(milliseconds: timeout) }
        if options.readsIntoArrays {
            socket.onReadArray = { [weak self] array in self?.delegate?.layerDidRead(owned: array) }
        } else {
            socket.onRead = { [weak self] bytes in self?.delegate?.layerDidRead(bytes) }
        }
        socket.onEndOfStream = { [weak self] in self?.delegate?.layerDidReadEndOfStream() }
        socket.onReadError = { [weak self] error in self?.delegate?.layerDidFail(error) }
        if reading { socket.startReading() }
        delegate?.layerDidBecomeReady()
    }

    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        socket.write(bytes, completion: completion)
    }

    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?) {
        socket.write(array, completion: completion)
    }

    func finishWriting(completion: @escaping (TransportError?) -> Void) {
        socket.shutdownWrite(completion: completion)
    }

    func setReading(_ enabled: Bool) {
        guard enabled != reading else { return }
        reading = enabled
        guard established else { return }
        if enabled { socket.startReading() } else { socket.stopReading() }
    }

    func abort() { socket.reset() }
    func close() { socket.close() }

    var localAddress: SocketAddress? { socket.localAddress }
    var remoteAddress: SocketAddress? { socket.remoteAddress ?? remote }
}
