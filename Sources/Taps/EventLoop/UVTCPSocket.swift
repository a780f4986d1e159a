internal import CLibUV
import Glibc

/// A libuv TCP handle: connect, listen / accept, read, write, half-close. Loop thread only.
///
/// Reads land either in one buffer owned by the socket, handed up as a borrowed pointer that the
/// reader consumes before returning (`onRead`, under TLS), or each in a new array handed up whole
/// (`onReadArray`, plain TCP: no copy between the kernel and the application). Writes try
/// `uv_try_write` first and copy only what the kernel did not take at once.
final class UVTCPSocket: UVHandle {
    /// Plain TCP reads into arrays of this size, which stay clear of glibc's mmap threshold; TLS
    /// decrypts out of the socket's buffer, so reads can be larger there (fewer system calls).
    static let defaultReadBufferSize = 64 * 1024
    static let largeReadBufferSize = 256 * 1024
    private let readBufferSize: Int
    /// The last read filled the buffer, so libuv would read again at once: the next allocation
    /// request gets no buffer, and the loop runs the jobs the read queued (the application taking
    /// the bytes) before the socket is read again. A reader that keeps up then gets back the same,
    /// cache-warm memory for each read instead of up to 32 reads' worth of fresh arrays per wakeup.
    private var yieldBeforeNextRead = false

    private let tcp: UnsafeMutablePointer<uv_tcp_t>
    /// Borrowed reads: the loop's shared read buffer (`EventLoop.sharedReadBuffer`), taken when
    /// reading starts.
    private var readBuffer: UnsafeMutableRawPointer?
    /// Where in a page the read buffer starts. The kernel copies received data with `rep movsb`,
    /// which on this machine's AMD cores runs at half speed when the destination sits just past the
    /// source's offset within a page, as it does for a buffer 16 bytes into a page (where glibc puts
    /// any allocation it serves with mmap, e.g. 256 KB): plain TCP received 1.3 GB/s there and
    /// 3.0 GB/s at half a page, with the C baseline showing the same two speeds depending on where
    /// its buffer landed (Docs/Benchmarks.md).
    static let readBufferPageOffset = 2048
    private var queuedWrites = 0

    var onRead: ((UnsafeRawBufferPointer) -> Void)?
    /// Set instead of `onRead`: each read lands in a new array of its own, handed over whole.
    var onReadArray: (([UInt8]) -> Void)?
    private var descriptor: Int32 = -1
    var onEndOfStream: (() -> Void)?
    var onReadError: ((TransportError) -> Void)?
    private var connectCompletion: ((TransportError?) -> Void)?

    init(loop: EventLoop, readBufferSize: Int = UVTCPSocket.defaultReadBufferSize) {
        tcp = .allocate(capacity: 1)
        uv_tcp_init(loop.uvLoop, tcp)
        self.readBufferSize = readBufferSize
        super.init(loop: loop, handle: tcp)
    }

    override func didClose() {
        spareBuffers.forEach { $0.deallocate() }
        spareBuffers.removeAll()
        readArrays.releaseParked()
        onRead = nil
        onReadArray = nil
        onEndOfStream = nil
        onReadError = nil
    }

    fileprivate var tcpHandle: UnsafeMutablePointer<uv_tcp_t> { tcp }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    // MARK: Establishment

    func connect(to address: SocketAddress, completion: @escaping (TransportError?) -> Void) {
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        connectCompletion = completion
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let status = address.withUnsafeSockaddr { uv_tcp_connect(request, tcp, $0) { request, status in
            guard let request else { return }
            defer { request.deallocate() }
            // A socket closed while connecting reports UV_ECANCELED after its owner may be gone.
            guard status != UV_ECANCELED.rawValue, let handle = request.pointee.handle,
                  let socket = UVHandle.owner(handle, as: UVTCPSocket.self) else { return }
            let completion = socket.connectCompletion
            socket.connectCompletion = nil
            if status == 0, let local = socket.localAddress, local == socket.remoteAddress {
                // TCP simultaneous open with itself (RFC 9293 section 3.5): nothing listened there
                // and the kernel picked the destination port as the source. Not a peer.
                completion?(.connectionRefused("nothing listens at \(local): the connection reached itself (the kernel chose the same port for this end)"))
                return
            }
            completion?(status == 0 ? nil : .uv(status, "connect"))
        } }
        if status != 0 {
            request.deallocate()
            connectCompletion = nil
            completion(.uv(status, "connect to \(address)"))
        }
    }

    func bind(_ address: SocketAddress) throws(TransportError) {
        let status = address.withUnsafeSockaddr { uv_tcp_bind(tcp, $0, 0) }
        if status != 0 { throw .uv(status, "bind \(address)") }
    }

    // MARK: Options and addresses

    func setNoDelay(_ on: Bool) { uv_tcp_nodelay(tcp, on ? 1 : 0) }

    func setKeepAlive(_ on: Bool, delaySeconds: UInt32) { uv_tcp_keepalive(tcp, on ? 1 : 0, delaySeconds) }

    var localAddress: SocketAddress? { address(uv_tcp_getsockname) }
    var remoteAddress: SocketAddress? { address(uv_tcp_getpeername) }

    private func address(_ get: (UnsafePointer<uv_tcp_t>?, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<Int32>?) -> Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { get(tcp, $0, &length) }
        }
        return status == 0 ? SocketAddress(storage: storage) : nil
    }

    // MARK: Reading

    func startReading() {
        guard !isClosed else { return }
        if onReadArray != nil {
            if descriptor < 0 { descriptor = fileDescriptor ?? -1 }
        } else if readBuffer == nil {
            precondition(readBufferSize <= Self.largeReadBufferSize, "a borrowed read fits the loop's shared buffer")
            readBuffer = loop.sharedReadBuffer
        }
        uv_read_start(stream, { handle, _, buffer in
            guard let buffer, let socket = UVHandle.owner(handle, as: UVTCPSocket.self) else { return }
            if socket.yieldBeforeNextRead || socket.onReadArray != nil {
                // A zero-length buffer ends libuv's read burst: it reports UV_ENOBUFS and returns;
                // the socket stays readable and is read on the next turn of the loop.
                socket.yieldBeforeNextRead = false
                buffer.pointee = uv_buf_init(nil, 0)
                return
            }
            buffer.pointee = uv_buf_init(socket.readBuffer?.assumingMemoryBound(to: CChar.self), UInt32(socket.readBufferSize))
        }, { handle, count, _ in
            guard let socket = UVHandle.owner(handle, as: UVTCPSocket.self) else { return }
            socket.didRead(count)
        })
    }

    /// The socket's own read buffer, once reading has started (nil while reads go into arrays).
    var readBufferStart: UnsafeRawPointer? { readBuffer.map(UnsafeRawPointer.init) }

    func stopReading() {
        guard !isClosed else { return }
        uv_read_stop(stream)
    }

    private func didRead(_ count: Int) {
        if count == Int(UV_ENOBUFS.rawValue) {  // the yield above, or readable for an array read
            if onReadArray != nil { readIntoArray() }
            return
        }
        if count > 0 {
            yieldBeforeNextRead = count == readBufferSize
            onRead?(UnsafeRawBufferPointer(start: readBuffer, count: count))
        } else if count == Int(UV_EOF.rawValue) {
            uv_read_stop(stream)
            onEndOfStream?()
        } else if count < 0 {
            uv_read_stop(stream)
            onReadError?(.uv(Int32(count), "read"))
        }
    }

    /// One read(2) straight into a new array. libuv only reported the socket readable (its buffer
    /// request got none), so it makes no read of its own and runs the loop's other work before the
    /// next: the application takes each read before the next is made, and a reader that keeps up
    /// frees each array before the allocator is asked for the next. Against copying each read out
    /// of the socket's buffer: plain TCP 0.88 -> 1.05 of the C baseline, MB per CPU-second 0.76 ->
    /// 0.89 of it (paired medians of 8 alternating runs, 64 KB messages). No array starts where
    /// the kernel's copy into it would be slow (`ReadArrayMaker`).
    private func readIntoArray() {
        var result = 0
        var failure: Int32 = 0
        let array = readArrays.makeArray(capacity: readBufferSize) { buffer in
            result = Glibc.read(descriptor, buffer.baseAddress, buffer.count)
            failure = result < 0 ? errno : 0
            return result
        }
        if result > 0 {
            // A short read gets an array its own size: a small message must not hold a large block.
            onReadArray?(result < readBufferSize / 4 ? array.withUnsafeBufferPointer { Array($0) } : array)
        } else if result == 0 {
            uv_read_stop(stream)
            onEndOfStream?()
        } else if failure != EAGAIN && failure != EINTR {
            uv_read_stop(stream)
            onReadError?(.uv(-failure, "read"))
        }
    }

    private var readArrays = ReadArrayMaker()

    // MARK: Writing

    /// Writes `bytes`; `completion` runs once the kernel has all of them, possibly before `write`
    /// returns. The caller's buffer is not used after `write` returns.
    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        guard let written = writeNow(bytes, completion: completion) else { return }
        guard written < bytes.count else {
            completion?(nil)
            return
        }
        queueWrite(UnsafeRawBufferPointer(rebasing: bytes[written...]), completion: completion)
    }

    /// Hands the kernel what it takes at once when nothing is queued before (order must hold).
    /// Returns how many bytes went, or nil after reporting a failure to `completion`.
    private func writeNow(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) -> Int? {
        guard !isClosed else {
            completion?(.connectionReset("write on a closed socket"))
            return nil
        }
        guard queuedWrites == 0 else { return 0 }
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let written = uv_try_write(stream, &buffer, 1)
        if written >= 0 { return Int(written) }
        if written == UV_EAGAIN.rawValue { return 0 }
        completion?(.uv(written, "write"))
        return nil
    }

    /// Keeps what a queued write points at alive until libuv is done with it: either a copy taken
    /// from the socket's spare buffers (returned there afterwards, so a busy socket does not keep
    /// allocating fresh pages) or the caller's array itself.
    private final class PendingWrite {
        var copy: UnsafeMutableRawBufferPointer?
        var array: [UInt8]?
        let completion: ((TransportError?) -> Void)?
        unowned let socket: UVTCPSocket
        init(completion: ((TransportError?) -> Void)?, socket: UVTCPSocket) {
            self.completion = completion
            self.socket = socket
        }
    }

    private var spareBuffers: [UnsafeMutableRawBufferPointer] = []
    private static let spareBufferLimit = 64

    private func takeBuffer(count: Int) -> UnsafeMutableRawBufferPointer {
        if let index = spareBuffers.lastIndex(where: { $0.count >= count }) {
            return spareBuffers.remove(at: index)
        }
        return .allocate(byteCount: max(count, 64 * 1024), alignment: 16)
    }

    private func recycle(_ buffer: UnsafeMutableRawBufferPointer) {
        if spareBuffers.count < Self.spareBufferLimit && !isClosed { spareBuffers.append(buffer) } else { buffer.deallocate() }
    }

    private func queueWrite(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        let copy = takeBuffer(count: bytes.count)
        copy.copyMemory(from: bytes)
        let pending = PendingWrite(completion: completion, socket: self)
        pending.copy = copy
        submit(pending, UnsafeRawBufferPointer(start: copy.baseAddress, count: bytes.count))
    }

    /// Writes an array, keeping the array (not a copy) alive while libuv holds it.
    func write(_ array: [UInt8], completion: ((TransportError?) -> Void)?) {
        array.withUnsafeBytes { bytes in
            guard let written = writeNow(bytes, completion: completion) else { return }
            guard written < bytes.count else {
                completion?(nil)
                return
            }
            let pending = PendingWrite(completion: completion, socket: self)
            // The array's storage does not move while `pending` holds it unmodified.
            pending.array = array
            submit(pending, UnsafeRawBufferPointer(rebasing: bytes[written...]))
        }
    }

    private func submit(_ pending: PendingWrite, _ bytes: UnsafeRawBufferPointer) {
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(pending).toOpaque()
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        queuedWrites += 1
        let status = uv_write(request, stream, &buffer, 1) { request, status in
            guard let request else { return }
            let pending = Unmanaged<PendingWrite>.fromOpaque(request.pointee.data).takeRetainedValue()
            request.deallocate()
            pending.socket.queuedWrites -= 1
            if let copy = pending.copy { pending.socket.recycle(copy) }
            pending.completion?(status == 0 ? nil : .uv(status, "write"))
        }
        if status != 0 {
            queuedWrites -= 1
            Unmanaged<PendingWrite>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            if let copy = pending.copy { recycle(copy) }
            pending.completion?(.uv(status, "write"))
        }
    }

    /// Sends FIN after queued writes; the completion runs when it has been handed to the kernel.
    func shutdownWrite(completion: @escaping (TransportError?) -> Void) {
        final class Box { let completion: (TransportError?) -> Void; init(_ c: @escaping (TransportError?) -> Void) { completion = c } }
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(Box(completion)).toOpaque()
        let status = uv_shutdown(request, stream) { request, status in
            guard let request else { return }
            let box = Unmanaged<Box>.fromOpaque(request.pointee.data).takeRetainedValue()
            request.deallocate()
            box.completion(status == 0 || status == UV_ECANCELED.rawValue ? nil : .uv(status, "shutdown"))
        }
        if status != 0 {
            Unmanaged<Box>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            completion(.uv(status, "shutdown"))
        }
    }

    /// Closes with an RST instead of a FIN (abort). libuv refuses `uv_tcp_close_reset` while a
    /// shutdown is pending (a final message was sent); a plain close would then drop the queued
    /// writes and still send a FIN, so the peer would see a clean end with bytes missing. Here the
    /// socket lingers for zero seconds instead, which makes the kernel's close an RST all the same.
    func reset() {
        let tcp = self.tcp
        let fd = fileDescriptor
        closeHandle { handle, callback in
            guard uv_tcp_close_reset(tcp, callback) != 0 else { return }
            if let fd {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            }
            uv_close(handle, callback)
        }
    }
}

extension UVTCPSocket {
    var fileDescriptor: Int32? {
        var fd: uv_os_fd_t = -1
        return uv_fileno(rawHandle, &fd) == 0 ? fd : nil
    }

    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the connection fails
    /// (RFC 9622 connTimeout; RFC 5482 on the wire semantics).
    func setUserTimeout(milliseconds: UInt32) {
        var fd: uv_os_fd_t = -1
        guard uv_fileno(rawHandle, &fd) == 0 else { return }
        var value = milliseconds
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &value, socklen_t(MemoryLayout<UInt32>.size))
    }
}

/// An accepted TCP connection on its way to the loop that will poll it (`UVTCPListener` accepts on
/// one loop, a listener spreads connections over several): its descriptor, owned until a loop
/// adopts it or it is discarded.
struct HandedOverTCPConnection: Sendable {
    let descriptor: Int32

    /// The connection as a socket of `loop`; call on that loop. On failure the connection is closed.
    func adopt(on loop: EventLoop, readBufferSize: Int) throws(TransportError) -> UVTCPSocket {
        let socket = UVTCPSocket(loop: loop, readBufferSize: readBufferSize)
        let status = uv_tcp_open(socket.tcpHandle, descriptor)
        guard status == 0 else {
            socket.close()
            discard()
            throw .uv(status, "take over an accepted connection")
        }
        return socket
    }

    /// Closes the connection (its loop is gone).
    func discard() { Glibc.close(descriptor) }
}
