/// Schedules the racer's timers: a loop's libuv timers in the library, virtual time in tests.
protocol RacingClock {
    func schedule(after delay: Duration, _ body: @escaping () -> Void) -> any RacingCancellable
}

/// A timer or a name query that can be called off.
protocol RacingCancellable {
    func cancel()
}

/// Names resolved for the racer, one address family per query. A query still out when the race is
/// decided is cancelled (it may answer anyway; the answer is then ignored).
protocol NameResolving {
    func resolve(_ host: String, port: UInt16, family: SocketAddress.Family,
                 completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) -> (any RacingCancellable)?
}

/// The racing environment of a loop: its timers and `uv_getaddrinfo` on it.
struct LoopRacingEnvironment: RacingClock, NameResolving {
    let loop: EventLoop

    func schedule(after delay: Duration, _ body: @escaping () -> Void) -> any RacingCancellable {
        UVTimer.schedule(on: loop, after: UInt64(max(0, delay.milliseconds)), body)
    }

    func resolve(_ host: String, port: UInt16, family: SocketAddress.Family,
                 completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) -> (any RacingCancellable)? {
        Resolver.resolve(host, port: port, family: family, on: loop, completion: completion)
    }
}

extension UVTimer: RacingCancellable {
    func cancel() { close() }
}
