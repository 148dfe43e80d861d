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

extension Backoff {
    /// Runs `operation` until it succeeds, waiting between attempts as this backoff says after each failure that
    /// `isRetriable` accepts (one it does not is thrown), until the task is cancelled. `failed` hears each retriable
    /// failure with its attempt number (1 for the first) and the wait before the next. An attempt that ran for longer
    /// than `maximum` before it failed (a session that served for a while, then was lost) counts as the first again.
    public func retrying<T>(
        isolation: isolated (any Actor)? = #isolation, isRetriable: (any Error) -> Bool,
        failed: (any Error, _ attempt: Int, _ delay: Duration) -> Void = { _, _, _ in },
        _ operation: () async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            let started = ContinuousClock.now
            do {
                return try await operation()
            } catch let error where !(error is CancellationError) && isRetriable(error) {
                if ContinuousClock.now - started > maximum { attempt = 0 }
                attempt += 1
                let delay = delay(attempt: attempt)
                failed(error, attempt, delay)
                try await Task.sleep(for: delay)
            }
        }
    }
}
