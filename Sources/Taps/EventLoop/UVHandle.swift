internal import CLibUV

/// Owns one libuv handle. The handle keeps its owner alive (through `data`) from init until libuv's
/// close callback, because libuv may still touch the handle's memory until then; the memory is freed
/// there too. All methods run on the loop thread.
class UVHandle {
    unowned let loop: EventLoop
    let rawHandle: UnsafeMutablePointer<uv_handle_t>
    private(set) var isClosed = false

    init(loop: EventLoop, handle: UnsafeMutableRawPointer) {
        self.loop = loop
        rawHandle = handle.assumingMemoryBound(to: uv_handle_t.self)
        rawHandle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Closes the handle; the owner is released once libuv is done with it.
    func close() {
        closeHandle { handle, callback in uv_close(handle, callback) }
    }

    /// Starts closing with `start` (uv_close or a variant such as uv_tcp_close_reset), once.
    final func closeHandle(_ start: (UnsafeMutablePointer<uv_handle_t>, uv_close_cb) -> Void) {
        guard !isClosed else { return }
        isClosed = true
        start(rawHandle) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            let owner = Unmanaged<UVHandle>.fromOpaque(data).takeRetainedValue()
            owner.didClose()
            UnsafeMutableRawPointer(handle).deallocate()
        }
    }

    /// Called once libuv has finished with the handle; subclasses free what they own here.
    func didClose() {}

    static func owner<T: UVHandle>(_ handle: UnsafeMutableRawPointer?, as type: T.Type) -> T? {
        guard let handle, let data = handle.assumingMemoryBound(to: uv_handle_t.self).pointee.data else { return nil }
        return Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue() as? T
    }
}

extension TransportError {
    /// Maps a libuv status code to an error that names the operation.
    static func uv(_ status: Int32, _ operation: String) -> TransportError {
        let text = String(cString: uv_strerror(status))
        switch status {
        case UV_ECONNREFUSED.rawValue: return .connectionRefused("\(operation): \(text)")
        case UV_ECONNRESET.rawValue, UV_EPIPE.rawValue: return .connectionReset("\(operation): \(text)")
        case UV_EADDRINUSE.rawValue: return .addressInUse("\(operation): \(text)")
        case UV_ETIMEDOUT.rawValue: return .timedOut("\(operation): \(text)")
        default: return TransportError(.io, "\(operation): \(text) (\(status))")
        }
    }
}
