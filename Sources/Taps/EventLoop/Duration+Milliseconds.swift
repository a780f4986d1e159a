extension Duration {
    /// Whole milliseconds, rounded down (libuv timers and socket options count in milliseconds).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
