extension Duration {
    /// The duration in seconds, as a floating-point number.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Runs `step` again and again until `seconds` have passed; each run returns how many operations it
/// completed. The result is operations per second over the time actually taken.
func operationsPerSecond(for seconds: Double, _ step: (_ deadline: ContinuousClock.Instant) async throws -> Int) async rethrows -> Double {
    let started = ContinuousClock.now
    let deadline = started + .seconds(seconds)
    var count = 0
    while ContinuousClock.now < deadline { count += try await step(deadline) }
    return Double(count) / (ContinuousClock.now - started).inSeconds
}
