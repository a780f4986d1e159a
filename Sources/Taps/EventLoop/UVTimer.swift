internal import CLibUV

/// A libuv timer. Loop thread only.
final class UVTimer: UVHandle {
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?

    init(loop: EventLoop) {
        timer = .allocate(capacity: 1)
        uv_timer_init(loop.uvLoop, timer)
        super.init(loop: loop, handle: timer)
    }

    /// Fires `callback` after `milliseconds`, then every `repeatMilliseconds` if that is non-zero.
    func start(after milliseconds: UInt64, repeat repeatMilliseconds: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard !isClosed else { return }
        self.callback = callback
        // libuv counts from its cached loop time, which can be stale after a long iteration; a timer
        // must not fire before the time it was asked for.
        uv_update_time(loop.uvLoop)
        uv_timer_start(timer, { handle in
            UVHandle.owner(handle, as: UVTimer.self)?.fire()
        }, milliseconds, repeatMilliseconds)
    }

    private func fire() {
        let callback = self.callback
        if uv_timer_get_repeat(timer) == 0 { self.callback = nil }
        callback?()
    }

    override func close() {
        callback = nil
        super.close()
    }

    /// A one-shot timer that closes itself after firing.
    @discardableResult
    static func schedule(on loop: EventLoop, after milliseconds: UInt64, _ body: @escaping () -> Void) -> UVTimer {
        let timer = UVTimer(loop: loop)
        timer.start(after: milliseconds) { [unowned timer] in
            timer.close()
            body()
        }
        return timer
    }
}
