/// Capped exponential backoff with jitter, for reconnecting to a broker or database that went away.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The wait before attempt `attempt` (1 for the first retry): doubling from `initial` up to `maximum`, then
    /// scaled by a random factor from 0.5 to 1 so that replicas that failed together do not retry together.
    public func delay(attempt: Int) -> Duration {
        let doubled = initial * (1 << min(max(attempt - 1, 0), 20))
        return min(doubled, maximum) * Double.random(in: 0.5...1)
    }
}
