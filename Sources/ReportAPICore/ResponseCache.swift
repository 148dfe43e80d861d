import Synchronization

/// Answers of identical report queries, kept for a short time: dashboards and scripts that ask the same report
/// many times a second are answered from memory, at most `lifetime` staler than the rollups when nobody waits, and
/// never more than twice that. Concurrent askers of a query that is not cached wait for one computation rather than
/// each running their own; once an answer has expired, its askers get it while one of them computes the next, so
/// that a busy query never has everyone wait for the database.
final class ResponseCache<Answer: Sendable>: Sendable {
    private struct Entry {
        /// The last answer computed, and when its computation started.
        var latest: (answer: Answer, computedAt: ContinuousClock.Instant)?
        /// The computation under way, if any.
        var computing: Task<Answer, any Error>?
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let lifetime: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    /// Past this many entries the cache starts afresh, which bounds its memory.
    private let capacity = 1_024

    /// A cache keeping answers for `lifetime`; a lifetime of zero turns caching off. `now` is the clock that ages
    /// the answers (tests move their own by hand).
    init(lifetime: Duration, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.lifetime = lifetime
        self.now = now
    }

    /// The cached answer for `key`, or the one `compute` gives, which is then cached. A failed computation is
    /// not kept, and its error goes to those who waited for it.
    func answer(for key: String, _ compute: @escaping @Sendable () async throws -> Answer) async throws -> Answer {
        guard lifetime > .zero else { return try await compute() }
        let now = self.now()
        let found: Lookup = entries.withLock { entries in
            let entry = entries[key] ?? Entry()
            if let latest = entry.latest, now - latest.computedAt < lifetime { return .answer(latest.answer) }
            let computing = entry.computing ?? start(key, compute, at: now, in: &entries)
            if let latest = entry.latest, now - latest.computedAt < lifetime * 2 { return .answer(latest.answer) }
            return .computing(computing)
        }
        switch found {
        case .answer(let answer): return answer
        case .computing(let computation): return try await computation.value
        }
    }

    private enum Lookup {
        case answer(Answer)
        case computing(Task<Answer, any Error>)
    }

    /// Starts computing the answer for `key`; it is recorded when it comes, and forgotten if it fails.
    private func start(
        _ key: String, _ compute: @escaping @Sendable () async throws -> Answer, at now: ContinuousClock.Instant,
        in entries: inout [String: Entry]
    ) -> Task<Answer, any Error> {
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        let computation = Task {
            do {
                let answer = try await compute()
                self.entries.withLock { $0[key] = Entry(latest: (answer, now), computing: nil) }
                return answer
            } catch {
                self.entries.withLock { entries in
                    if entries[key]?.latest == nil { entries[key] = nil } else { entries[key]?.computing = nil }
                }
                throw error
            }
        }
        entries[key, default: Entry()].computing = computation
        return computation
    }
}
