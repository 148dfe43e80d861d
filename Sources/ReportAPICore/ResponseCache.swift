import Synchronization

/// Answers of identical report queries, kept for a short time: dashboards and scripts that ask the same report
/// many times a second are answered from memory, at most `lifetime` staler than the rollups. Concurrent askers of
/// a query that is not cached wait for one computation rather than each running their own.
final class ResponseCache: Sendable {
    private struct Entry {
        var answer: Task<String, any Error>
        var createdAt: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let lifetime: Duration
    /// Past this many entries the cache starts afresh, which bounds its memory.
    private static let capacity = 1_024

    /// A cache keeping answers for `lifetime`; a lifetime of zero turns caching off.
    init(lifetime: Duration) {
        self.lifetime = lifetime
    }

    /// The cached answer for `key`, or the one `compute` gives, which is then cached. A failed computation is
    /// not kept.
    func answer(for key: String, _ compute: @escaping @Sendable () async throws -> String) async throws -> String {
        guard lifetime > .zero else { return try await compute() }
        let now = ContinuousClock.now
        let task = entries.withLock { entries in
            if let entry = entries[key], now - entry.createdAt < lifetime { return entry.answer }
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            let task = Task { try await compute() }
            entries[key] = Entry(answer: task, createdAt: now)
            return task
        }
        do {
            return try await task.value
        } catch {
            entries.withLock { entries in
                if let entry = entries[key], entry.createdAt == now { entries[key] = nil }
            }
            throw error
        }
    }
}
