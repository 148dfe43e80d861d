/// A token bucket: how many events a steady `rate` allows by now, with at most `burst` saved up.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var updatedAt: ContinuousClock.Instant

    public init(rate: Double, burst: Double, now: ContinuousClock.Instant = .now) {
        self.rate = rate
        self.burst = burst
        self.tokens = 0
        self.updatedAt = now
    }

    /// Takes as many whole tokens as have accrued by `now`, up to `limit`.
    public mutating func take(upTo limit: Int, now: ContinuousClock.Instant = .now) -> Int {
        let elapsed = now - updatedAt
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + seconds * rate)
        updatedAt = now
        let taken = min(limit, Int(tokens))
        tokens -= Double(taken)
        return taken
    }
}
