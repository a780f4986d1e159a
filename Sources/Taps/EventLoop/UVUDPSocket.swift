internal import CLibUV
import Glibc

/// A libuv UDP handle. Loop thread only.
///
/// Datagrams arrive in one buffer owned by the socket and are handed up as a borrowed pointer with
/// the sender's address. Sends try `uv_udp_try_send` first and copy only when the kernel would block.
final class UVUDPSocket: UVHandle {
    static let receiveBufferSize = 65_536

    private let udp: UnsafeMutablePointer<uv_udp_t>
    private let receiveBuffer: UnsafeMutableRawPointer
    var onDatagram: ((UnsafeRawBufferPointer, SocketAddress) -> Void)?
    var onReceiveError: ((TransportError) -> Void)?
    private(set) var connectedPeer: SocketAddress?

    init(loop: EventLoop) {
        udp = .allocate(capacity: 1)
        uv_udp_init(loop.uvLoop, udp)
        receiveBuffer = .allocate(byteCount: Self.receiveBufferSize, alignment: 16)
        super.init(loop: loop, handle: udp)
    }

    override func didClose() {
        receiveBuffer.deallocate()
        onDatagram = nil
        onReceiveError = nil
    }

    func bind(_ address: SocketAddress, reuseAddress: Bool = false) throws(TransportError) {
        let flags: UInt32 = reuseAddress ? UInt32(UV_UDP_REUSEADDR.rawValue) : 0
        let status = address.withUnsafeSockaddr { uv_udp_bind(udp, $0, flags) }
        if status != 0 { throw .uv(status, "bind UDP \(address)") }
    }

    /// Fixes the peer: sends go there and only its datagrams are received.
    func connect(_ address: SocketAddress) throws(TransportError) {
        let status = address.withUnsafeSockaddr { uv_udp_connect(udp, $0) }
        if status != 0 { throw .uv(status, "connect UDP \(address)") }
        connectedPeer = address
    }

    var localAddress: SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_udp_getsockname(udp, $0, &length) }
        }
        return status == 0 ? SocketAddress(storage: storage) : nil
    }

    func setBufferSizes(send: Int32, receive: Int32) {
        var send = send, receive = receive
        uv_send_buffer_size(rawHandle, &send)
        uv_recv_buffer_size(rawHandle, &receive)
    }

    func startReceiving() {
        guard !isClosed else { return }
        uv_udp_recv_start(udp, { handle, _, buffer in
            guard let buffer, let socket = UVHandle.owner(handle, as: UVUDPSocket.self) else { return }
            buffer.pointee = uv_buf_init(socket.receiveBuffer.assumingMemoryBound(to: CChar.self), UInt32(UVUDPSocket.receiveBufferSize))
        }, { handle, count, _, address, _ in
            guard let socket = UVHandle.owner(handle, as: UVUDPSocket.self) else { return }
            if count < 0 {
                socket.onReceiveError?(.uv(Int32(count), "receive UDP"))
                return
            }
            // count == 0 with no address means "nothing more to read now".
            guard let address, let sender = SocketAddress(address) else { return }
            socket.onDatagram?(UnsafeRawBufferPointer(start: socket.receiveBuffer, count: count), sender)
        })
    }

    func stopReceiving() {
        guard !isClosed else { return }
        uv_udp_recv_stop(udp)
    }

    /// Sends one datagram (to `address`, or to the connected peer when nil). Completion may run
    /// before `send` returns; the caller's buffer is not used after `send` returns.
    func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress? = nil, completion: ((TransportError?) -> Void)? = nil) {
        guard !isClosed else {
            completion?(.connectionReset("send on a closed UDP socket"))
            return
        }
        let destination = connectedPeer == nil ? address : nil
        var buffer = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
        let sent: Int32 = withOptionalSockaddr(destination) { uv_udp_try_send(udp, &buffer, 1, $0) }
        if sent >= 0 {
            completion?(nil)
            return
        }
        if sent != UV_EAGAIN.rawValue {
            completion?(.uv(sent, "send UDP"))
            return
        }
        queueSend(bytes, to: destination, completion: completion)
    }

    private final class PendingSend {
        let copy: UnsafeMutableRawBufferPointer
        let completion: ((TransportError?) -> Void)?
        init(copy: UnsafeMutableRawBufferPointer, completion: ((TransportError?) -> Void)?) { self.copy = copy; self.completion = completion }
    }

    private func queueSend(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress?, completion: ((TransportError?) -> Void)?) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        if bytes.count > 0 { copy.copyMemory(from: bytes) }
        let request = UnsafeMutablePointer<uv_udp_send_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(PendingSend(copy: copy, completion: completion)).toOpaque()
        var buffer = uv_buf_init(copy.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let status: Int32 = withOptionalSockaddr(destination) {
            uv_udp_send(request, udp, &buffer, 1, $0) { request, status in
                guard let request else { return }
                let pending = Unmanaged<PendingSend>.fromOpaque(request.pointee.data).takeRetainedValue()
                request.deallocate()
                pending.copy.deallocate()
                pending.completion?(status == 0 || status == UV_ECANCELED.rawValue ? nil : .uv(status, "send UDP"))
            }
        }
        if status != 0 {
            Unmanaged<PendingSend>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            copy.deallocate()
            completion?(.uv(status, "send UDP"))
        }
    }

    private func withOptionalSockaddr<R>(_ address: SocketAddress?, _ body: (UnsafePointer<sockaddr>?) -> R) -> R {
        guard let address else { return body(nil) }
        return address.withUnsafeSockaddr { body($0) }
    }
}
