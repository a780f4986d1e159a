internal import CLibUV
internal import CTapsShims
import Glibc

/// A listening TCP socket that accepts connections itself (`accept4`, on its loop's poll), instead
/// of through `uv_listen`. At the descriptor limit libuv accepts the waiting connections and closes
/// them without telling its caller (its EMFILE trick); here every connection lost that way is
/// reported, and listening goes on once descriptors free up. An accepted connection is a bare
/// descriptor, which any loop can take over (`HandedOverTCPConnection.adopt`). Loop thread only.
final class UVTCPListener: UVHandle {
    private let poll: UnsafeMutablePointer<uv_poll_t>
    private let descriptor: Int32
    /// A descriptor held back for the limit: closed for a moment, it lets one waiting connection be
    /// accepted and reset, so that the kernel's queue drains instead of holding peers that would
    /// never be served. -1 while it could not be opened again.
    private var reserve: Int32
    /// Polling paused while no descriptor is free even for the reserve (a queued connection would
    /// otherwise keep the socket readable and the loop spinning); it retries on this timer.
    private var retry: UVTimer?
    let localAddress: SocketAddress
    private let onConnection: (HandedOverTCPConnection) -> Void
    private let onDropped: (TransportError) -> Void

    /// Binds and listens on `address` (port 0: an ephemeral one). `onConnection` gets each accepted
    /// connection; `onDropped` each one that was reset because the process was out of descriptors.
    init(loop: EventLoop, address: SocketAddress, backlog: Int32 = 511,
         onConnection: @escaping (HandedOverTCPConnection) -> Void,
         onDropped: @escaping (TransportError) -> Void) throws(TransportError) {
        let family = address.family == .ipv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        // libuv's status codes are negated errno values on Unix: `TransportError.uv` maps both.
        guard fd >= 0 else { throw .uv(-errno, "socket") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        let length = socklen_t(family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        // libuv reports a taken port at listen time; bind reports it here.
        guard address.withUnsafeSockaddr({ Glibc.bind(fd, $0, length) }) == 0 else {
            let failure = errno
            Glibc.close(fd)
            throw .uv(-failure, "bind \(address)")
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let failure = errno
            Glibc.close(fd)
            throw .uv(-failure, "listen on \(address)")
        }
        var storage = sockaddr_storage()
        var storageLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &storageLength) }
        }
        poll = .allocate(capacity: 1)
        guard uv_poll_init_socket(loop.uvLoop, poll, fd) == 0 else {
            poll.deallocate()
            Glibc.close(fd)
            throw TransportError.io("listen on \(address): the loop cannot poll the socket")
        }
        descriptor = fd
        reserve = Self.openReserve()
        localAddress = SocketAddress(storage: storage)
        self.onConnection = onConnection
        self.onDropped = onDropped
        super.init(loop: loop, handle: poll)
        startPolling()
    }

    override func didClose() {
        retry?.close()
        Glibc.close(descriptor)
        if reserve >= 0 { Glibc.close(reserve) }
    }

    private func startPolling() {
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { handle, status, _ in
            guard status == 0, let listener = UVHandle.owner(handle, as: UVTCPListener.self) else { return }
            listener.acceptAll()
        }
    }

    /// Accepts every waiting connection.
    private func acceptAll() {
        while !isClosed {
            let fd = taps_accept(descriptor, 1)
            if fd >= 0 {
                onConnection(HandedOverTCPConnection(descriptor: fd))
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED, EPROTO:
                continue  // that connection is gone already; the next may wait
            case EMFILE, ENFILE:
                guard dropOneWaitingConnection() else { return }
            default:
                onDropped(.uv(-errno, "accept"))
                return
            }
        }
    }

    /// Out of descriptors: frees the reserve, accepts one waiting connection and resets it (the peer
    /// sees a reset, not a connection that never answers), then takes the reserve again. False when
    /// there was none to take, or the reserve itself cannot be had (polling then pauses).
    private func dropOneWaitingConnection() -> Bool {
        guard reserve >= 0 else {
            pauseUntilDescriptorsFree()
            return false
        }
        Glibc.close(reserve)
        let waiting = taps_accept(descriptor, 0)
        if waiting >= 0 {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(waiting, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            Glibc.close(waiting)
            onDropped(.io("an incoming connection was reset: the process is out of file descriptors (EMFILE); raise the limit (ulimit -n) or serve fewer connections at once"))
        }
        reserve = Self.openReserve()
        if reserve < 0 { pauseUntilDescriptorsFree() }
        return waiting >= 0 && reserve >= 0
    }

    private func pauseUntilDescriptorsFree() {
        guard retry == nil else { return }
        uv_poll_stop(poll)
        retry = UVTimer.schedule(on: loop, after: 100) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.retry = nil
            if self.reserve < 0 { self.reserve = Self.openReserve() }
            self.startPolling()
        }
    }

    private static func openReserve() -> Int32 { open("/", O_RDONLY | O_CLOEXEC) }
}
