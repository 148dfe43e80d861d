import Synchronization

/// Answers of identical report queries, kept until the rollups change, within a budget of bytes. Concurrent askers of
/// a query that is not cached wait for one computation rather than each running their own, and a computation that
/// every asker gave up on (their clients went away) is cancelled.
///
/// With the signal of folds heard (`generation` gives a value), an answer is current while no fold has committed
/// since its computation started, and a fold makes each report recompute once at most, shared by its askers. A query
/// is computed at most once at a time. While a costly one is (`servingStale`), askers wait for it up to `patience` and
/// are then given the previous answer, with the validators of the fold it shows, if that answer's computation started
/// less than `maxStaleness` ago; past that age they wait for the new one. A cheap report is always waited for, as
/// fresh as the rollups.
///
/// Without the signal (`generation` is nil), answers are kept for `lifetime`: at most that staler than the rollups
/// when nobody waits, and never more than twice that, since an expired answer is still given while one asker computes
/// the next, so that a busy query never has everyone wait for the database.
///
/// An answer read from a standby that has not yet replayed the folds signalled is not `isCurrent`: it is given to those
/// who waited for it, and not kept for the generation, so that the next asker computes it again.
///
/// Past `maxBytes` (keys and answers), the answers asked for least recently are dropped; an answer larger than a
/// quarter of the budget is given and not kept.
final class ResponseCache<Answer: Sendable>: Sendable {
    private struct Entry {
        /// The last answer computed, when its computation started, the generation it started at, and what it counts
        /// against `maxBytes`, its key included.
        var latest: (answer: Answer, computedAt: ContinuousClock.Instant, generation: UInt64?, bytes: Int)?
        /// The computation under way, if any.
        var computing: Computation?
        /// The outcome of the last computation that ended, for askers that start listening just after it.
        var ended: (id: Int, outcome: Result<Answer, any Error>)?
        /// When the entry was last asked for, in the cache's ticks: the least recent goes first.
        var lastUsed: UInt64
    }

    private struct Computation {
        var id: Int
        var task: Task<Void, Never>
        var generation: UInt64?
        /// The askers waiting for its outcome, by listener id; those that `hold` it keep it from being cancelled.
        var listeners: [Int: (continuation: CheckedContinuation<Result<Answer, any Error>?, Never>, holds: Bool)]
        /// Askers that hold it, registered or about to be: when the last one leaves, it is cancelled.
        var holders = 0
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextID = 0
        var tick: UInt64 = 0
        var bytes = 0
    }

    private let state = Mutex(State())
    private let lifetime: Duration
    private let patience: Duration
    private let maxStaleness: Duration
    private let maxBytes: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let generation: @Sendable () -> UInt64?
    private let isCurrent: @Sendable (Answer) -> Bool
    private let size: @Sendable (Answer) -> Int
    private let sizeChanged: @Sendable (Int) -> Void

    /// A cache keeping answers while `generation` stays the same, or for `lifetime` while it is nil; a lifetime of
    /// zero turns caching off. `size` tells an answer's bytes, and `sizeChanged` hears the cache's total after each
    /// change (a metric). `now` is the clock that ages the answers (tests move their own by hand).
    init(
        lifetime: Duration, patience: Duration = .milliseconds(100), maxStaleness: Duration = .seconds(2),
        maxBytes: Int = 32 << 20, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        generation: @escaping @Sendable () -> UInt64? = { nil },
        isCurrent: @escaping @Sendable (Answer) -> Bool = { _ in true },
        size: @escaping @Sendable (Answer) -> Int = { _ in 0 },
        sizeChanged: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.lifetime = lifetime
        self.patience = patience
        self.maxStaleness = maxStaleness
        self.maxBytes = maxBytes
        self.now = now
        self.generation = generation
        self.isCurrent = isCurrent
        self.size = size
        self.sizeChanged = sizeChanged
    }

    /// The answer for `key` if one can be given at once, without computing or waiting for one.
    func cachedAnswer(for key: String) -> Answer? {
        guard lifetime > .zero else { return nil }
        let now = self.now()
        let generation = self.generation()
        return state.withLock { state -> Answer? in
            guard var entry = state.entries[key] else { return nil }
            state.tick += 1
            entry.lastUsed = state.tick
            state.entries[key] = entry
            guard let latest = entry.latest else { return nil }
            if let generation { return latest.generation == generation ? latest.answer : nil }
            if now - latest.computedAt < lifetime { return latest.answer }
            return entry.computing != nil && now - latest.computedAt < lifetime * 2 ? latest.answer : nil
        }
    }

    /// How many askers hold the computation of `key`'s answer under way (the tests wait for them to gather).
    func holders(of key: String) -> Int {
        state.withLock { $0.entries[key]?.computing?.holders ?? 0 }
    }

    /// The cached answer for `key`, or the one `compute` gives, which is then cached; with `servingStale`, the previous
    /// answer while a new one is computed. A failed computation is not kept, and its error goes to those who waited
    /// for it.
    func answer(
        for key: String, servingStale: Bool = false, _ compute: @escaping @Sendable () async throws -> Answer
    ) async throws -> Answer {
        guard lifetime > .zero else { return try await compute() }
        while true {
            let now = self.now()
            let generation = self.generation()
            let step = state.withLock { state in
                nextStep(
                    key, now: now, generation: generation, servingStale: servingStale, in: &state, compute: compute)
            }
            switch step {
            case .answer(let answer):
                return answer
            case .wait(let id, let isCurrent):
                // No outcome: the computation ended before this asker listened, its failure not kept; ask again.
                guard let answer = try await listen(key, computation: id, holding: true) else {
                    try Task.checkCancellation()
                    continue
                }
                if isCurrent { return answer }
            case .waitOrServe(let id, let previous):
                return try await listen(key, computation: id, holding: false, patience: patience) ?? previous
            }
        }
    }

    private enum Step {
        case answer(Answer)
        /// Wait for computation `id`, holding it; when it started at an older generation, ask again afterwards.
        case wait(id: Int, isCurrent: Bool)
        /// Wait up to `patience` for computation `id`, then serve `previous`.
        case waitOrServe(id: Int, previous: Answer)
    }

    private func nextStep(
        _ key: String, now: ContinuousClock.Instant, generation: UInt64?, servingStale: Bool, in state: inout State,
        compute: @escaping @Sendable () async throws -> Answer
    ) -> Step {
        state.tick += 1
        var entry = state.entries[key] ?? Entry(lastUsed: state.tick)
        entry.lastUsed = state.tick
        defer { state.entries[key] = entry }
        if let generation {
            if let latest = entry.latest, latest.generation == generation { return .answer(latest.answer) }
            let previous = entry.latest.flatMap {
                servingStale && now - $0.computedAt < maxStaleness ? $0.answer : nil
            }
            if entry.computing == nil {
                entry.computing = startComputation(key, compute, at: now, generation: generation, in: &state)
            }
            guard var computing = entry.computing else { return .wait(id: -1, isCurrent: false) }
            if let previous { return .waitOrServe(id: computing.id, previous: previous) }
            computing.holders += 1
            entry.computing = computing
            return .wait(id: computing.id, isCurrent: computing.generation == generation)
        }
        if let latest = entry.latest, now - latest.computedAt < lifetime { return .answer(latest.answer) }
        if entry.computing == nil {
            entry.computing = startComputation(key, compute, at: now, generation: nil, in: &state)
        }
        if let latest = entry.latest, now - latest.computedAt < lifetime * 2 { return .answer(latest.answer) }
        guard var computing = entry.computing else { return .wait(id: -1, isCurrent: false) }
        computing.holders += 1
        entry.computing = computing
        return .wait(id: computing.id, isCurrent: true)
    }

    /// The outcome of computation `id` of `key`, waited for up to `patience`; nil past it, when the task is cancelled,
    /// or when the computation ended unseen. A holder that is cancelled (its client went away) leaves it, and the last
    /// holder to leave cancels it.
    private func listen(_ key: String, computation id: Int, holding: Bool, patience: Duration? = nil)
        async throws -> Answer?
    {
        let listener = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let result: Result<Answer, any Error>?
        if let patience {
            result = await withTaskGroup(of: Result<Answer, any Error>?.self) { group in
                group.addTask { await self.outcome(of: id, key, listener: listener, holding: holding) }
                group.addTask {
                    try? await Task.sleep(for: patience)
                    return nil
                }
                defer { group.cancelAll() }
                return await group.next() ?? nil
            }
        } else {
            result = await outcome(of: id, key, listener: listener, holding: holding)
        }
        return try result?.get()
    }

    /// Waits for the outcome of computation `id`; nil when the waiting task is cancelled first.
    private func outcome(of id: Int, _ key: String, listener: Int, holding: Bool) async
        -> Result<Answer, any Error>?
    {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Result<Answer, any Error>?? in
                    guard var entry = state.entries[key], var computing = entry.computing, computing.id == id else {
                        let ended = state.entries[key]?.ended
                        return .some(ended?.id == id ? ended?.outcome : nil)
                    }
                    if Task.isCancelled { return .some(nil) }
                    computing.listeners[listener] = (continuation, holding)
                    entry.computing = computing
                    state.entries[key] = entry
                    return .none
                }
                if case .some(let outcome) = now { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            leave(key, computation: id, listener: listener, holding: holding)
        }
    }

    private func leave(_ key: String, computation id: Int, listener: Int, holding: Bool) {
        let (waiter, abandoned) = state.withLock {
            state -> (CheckedContinuation<Result<Answer, any Error>?, Never>?, Task<Void, Never>?) in
            guard var computing = state.entries[key]?.computing, computing.id == id else { return (nil, nil) }
            let waiter = computing.listeners.removeValue(forKey: listener)?.continuation
            if holding { computing.holders -= 1 }
            // Only a holder's leaving abandons it: one started for askers given the last answer meanwhile has no
            // holder, and runs to its end for the cache.
            guard holding, computing.holders <= 0, !computing.listeners.values.contains(where: \.holds) else {
                state.entries[key]?.computing = computing
                return (waiter, nil)
            }
            // Nobody holds it any more: cancelled, and forgotten, so that the next asker starts afresh. Those who
            // only waited a moment for it are told it has no answer for them.
            state.entries[key]?.computing = nil
            let others = computing.listeners.values.map(\.continuation)
            for other in others { other.resume(returning: nil) }
            return (waiter, computing.task)
        }
        waiter?.resume(returning: nil)
        abandoned?.cancel()
    }

    /// Starts computing the answer for `key`. Owned by the cache and shared by its askers, so that a client that
    /// leaves does not cancel it for the others; the last holder to leave cancels it (`leave`).
    private func startComputation(
        _ key: String, _ compute: @escaping @Sendable () async throws -> Answer, at now: ContinuousClock.Instant,
        generation: UInt64?, in state: inout State
    ) -> Computation {
        let id = state.nextID
        state.nextID += 1
        let task = Task {
            let outcome: Result<Answer, any Error>
            do {
                outcome = .success(try await compute())
            } catch {
                outcome = .failure(error)
            }
            self.end(key, computation: id, outcome, computedAt: now, generation: generation)
        }
        return Computation(id: id, task: task, generation: generation, listeners: [:])
    }

    /// Records the outcome of computation `id` and hands it to its listeners. An answer is kept unless an answer of a
    /// later generation was recorded first; a failure is not kept.
    private func end(
        _ key: String, computation id: Int, _ outcome: Result<Answer, any Error>, computedAt: ContinuousClock.Instant,
        generation: UInt64?
    ) {
        var kept: (Answer, Int)?
        if case .success(let answer) = outcome { kept = (answer, size(answer) + key.utf8.count) }
        let generation = kept.map { isCurrent($0.0) } == false ? nil : generation
        typealias Listener = CheckedContinuation<Result<Answer, any Error>?, Never>
        let (listeners, total) = state.withLock { state -> ([Listener], Int) in
            guard var entry = state.entries[key] else { return ([], state.bytes) }
            var listeners: [Listener] = []
            if entry.computing?.id == id {
                listeners = entry.computing.map { $0.listeners.values.map(\.continuation) } ?? []
                entry.computing = nil
            }
            entry.ended = (id, outcome)
            if let (answer, bytes) = kept, bytes <= maxBytes / 4,
                (entry.latest?.generation ?? 0) <= (generation ?? .max)
            {
                state.bytes += bytes - (entry.latest?.bytes ?? 0)
                entry.latest = (answer, computedAt, generation, bytes)
            }
            if entry.latest == nil, entry.computing == nil {
                state.entries[key] = nil
            } else {
                state.entries[key] = entry
            }
            if state.bytes > maxBytes { evictLeastRecentlyUsed(in: &state) }
            return (listeners, state.bytes)
        }
        for listener in listeners { listener.resume(returning: outcome) }
        sizeChanged(total)
    }

    /// Drops answers, least recently asked for first, until the cache holds three quarters of its budget, so that
    /// the next answers fit without a sweep each.
    private func evictLeastRecentlyUsed(in state: inout State) {
        let target = maxBytes / 4 * 3
        let byAge = state.entries.filter { $0.value.latest != nil }.sorted { $0.value.lastUsed < $1.value.lastUsed }
        for (key, entry) in byAge {
            guard state.bytes > target else { return }
            state.bytes -= entry.latest?.bytes ?? 0
            if entry.computing == nil {
                state.entries[key] = nil
            } else {
                state.entries[key]?.latest = nil
            }
        }
    }
}
