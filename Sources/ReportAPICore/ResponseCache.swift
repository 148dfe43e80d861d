import Synchronization

/// Answers of identical report queries, kept until the rollups change. Concurrent askers of a query that is not
/// cached wait for one computation rather than each running their own.
///
/// With the signal of folds heard (`generation` gives a value), an answer is served only while no fold has committed
/// since its computation started, and a fold makes each report recompute once at most, shared by its askers. Without
/// it (`generation` is nil), answers are kept for `lifetime`: at most that staler than the rollups when nobody waits,
/// and never more than twice that, since an expired answer is still given while one asker computes the next, so
/// that a busy query never has everyone wait for the database.
///
/// An answer read from a standby that has not yet replayed the folds signalled is not `isCurrent`: it is given to those
/// who waited for it, and not kept for the generation, so that the next asker computes it again.
final class ResponseCache<Answer: Sendable>: Sendable {
    private struct Entry {
        /// The last answer computed, when its computation started, and the generation it started at.
        var latest: (answer: Answer, computedAt: ContinuousClock.Instant, generation: UInt64?)?
        /// The computation under way, if any, and the generation it started at.
        var computing: Computation?
    }

    private struct Computation {
        var id: Int
        var task: Task<Answer, any Error>
        var generation: UInt64?
    }

    private let entries = Mutex<(entries: [String: Entry], nextID: Int)>(([:], 0))
    private let lifetime: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let generation: @Sendable () -> UInt64?
    private let isCurrent: @Sendable (Answer) -> Bool
    /// Past this many entries the cache starts afresh, which bounds its memory.
    private let capacity = 1_024

    /// A cache keeping answers while `generation` stays the same, or for `lifetime` while it is nil; a lifetime of
    /// zero turns caching off. `now` is the clock that ages the answers (tests move their own by hand).
    init(
        lifetime: Duration, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        generation: @escaping @Sendable () -> UInt64? = { nil },
        isCurrent: @escaping @Sendable (Answer) -> Bool = { _ in true }
    ) {
        self.lifetime = lifetime
        self.now = now
        self.generation = generation
        self.isCurrent = isCurrent
    }

    /// The cached answer for `key`, or the one `compute` gives, which is then cached. A failed computation is
    /// not kept, and its error goes to those who waited for it.
    func answer(for key: String, _ compute: @escaping @Sendable () async throws -> Answer) async throws -> Answer {
        guard lifetime > .zero else { return try await compute() }
        let now = self.now()
        let generation = self.generation()
        let found: Lookup = entries.withLock { cache in
            let entry = cache.entries[key] ?? Entry()
            if let generation {
                if let latest = entry.latest, latest.generation == generation { return .answer(latest.answer) }
                if let computing = entry.computing, computing.generation == generation {
                    return .computing(computing.task)
                }
                return .computing(start(key, compute, at: now, generation: generation, in: &cache))
            }
            if let latest = entry.latest, now - latest.computedAt < lifetime { return .answer(latest.answer) }
            let computing = entry.computing?.task ?? start(key, compute, at: now, generation: nil, in: &cache)
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

    /// Starts computing the answer for `key`; it is recorded when it comes, unless an answer of a later generation
    /// was recorded first, and forgotten if it fails.
    private func start(
        _ key: String, _ compute: @escaping @Sendable () async throws -> Answer, at now: ContinuousClock.Instant,
        generation: UInt64?, in cache: inout (entries: [String: Entry], nextID: Int)
    ) -> Task<Answer, any Error> {
        if cache.entries.count >= capacity { cache.entries.removeAll(keepingCapacity: true) }
        let id = cache.nextID
        cache.nextID += 1
        let computation = Task {
            do {
                let answer = try await compute()
                let generation = self.isCurrent(answer) ? generation : nil
                self.entries.withLock { cache in
                    var entry = cache.entries[key] ?? Entry()
                    if entry.computing?.id == id { entry.computing = nil }
                    if (entry.latest?.generation ?? 0) <= (generation ?? .max) {
                        entry.latest = (answer, now, generation)
                    }
                    cache.entries[key] = entry
                }
                return answer
            } catch {
                self.entries.withLock { cache in
                    guard cache.entries[key]?.computing?.id == id else { return }
                    if cache.entries[key]?.latest == nil {
                        cache.entries[key] = nil
                    } else {
                        cache.entries[key]?.computing = nil
                    }
                }
                throw error
            }
        }
        cache.entries[key, default: Entry()].computing = Computation(id: id, task: computation, generation: generation)
        return computation
    }
}
