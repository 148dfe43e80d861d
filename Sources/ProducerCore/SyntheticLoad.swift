import Basics
import Pipeline

/// Synthetic check-ins published at a steady rate (`producer load`), for benchmarks and demos: `rate × duration` of
/// them, the n-th due n / rate seconds after the start. A load that falls behind (a slow broker, a busy machine)
/// catches up rather than dropping what it owes, so the total is exact and the achieved rate says how far behind it
/// fell. The next chunk is generated while the broker confirms the one before.
public struct SyntheticLoad: Sendable {
    /// Check-ins a second.
    public var rate: Double
    public var duration: Duration
    /// Distinct users, 1 to `users`.
    public var users: Int32
    /// The check-ins are spread over this many past days (0: now).
    public var days: Int

    public static let spaces = ["hq", "annex", "default"]

    public init(rate: Double, duration: Duration, users: Int32, days: Int) {
        self.rate = rate
        self.duration = duration
        self.users = users
        self.days = days
    }

    /// `count` check-ins at `now`, or up to `days` before it. Ids come from `random` rather than `UUID()`, which on
    /// Linux opens, reads and closes /dev/urandom for each one.
    public func events(count: Int, now: Timestamp, using random: inout some RandomNumberGenerator) -> [Event] {
        (0..<count).map { _ in
            let back = days > 0 ? Int64.random(in: 0..<(Int64(days) * 86_400_000_000), using: &random) : 0
            return Event(
                id: .random(using: &random), kind: .checkin, userID: .random(in: 1...users, using: &random),
                occurredAt: Timestamp(microsecondsSinceEpoch: now.microsecondsSinceEpoch - back),
                spaceID: Self.spaces.randomElement(using: &random))
        }
    }

    /// How many check-ins the load publishes in all.
    public var total: Int {
        Int(rate * duration.seconds)
    }

    /// How many check-ins are due `elapsed` after the start.
    public func due(after elapsed: Duration) -> Int {
        min(total, Int(elapsed.seconds * rate))
    }

    /// Publishes `total` check-ins through `publisher` as they fall due, telling `progress` how many were published
    /// so far; returns what became of them.
    public func run(_ publisher: EventPublisher, progress: (Int) -> Void = { _ in }) async throws
        -> EventPublisher.Counts
    {
        var random = SystemRandomNumberGenerator()
        // The next chunk is generated while the one before, a child task, is being published and confirmed.
        return try await withThrowingTaskGroup(of: EventPublisher.Counts.self) { publishing in
            var counts = EventPublisher.Counts()
            var generated = 0
            let start = ContinuousClock.now
            while generated < total {
                let ready = min(due(after: .now - start) - generated, 50_000)
                guard ready > 0 else {
                    try await Task.sleep(for: .milliseconds(5))
                    continue
                }
                generated += ready
                let messages = events(count: ready, now: .now, using: &random).map(publisher.message(for:))
                if let previous = try await publishing.next() { counts += previous }
                publishing.addTask { await publisher.publish(messages) }
                progress(counts.published)
            }
            while let previous = try await publishing.next() { counts += previous }
            return counts
        }
    }
}
