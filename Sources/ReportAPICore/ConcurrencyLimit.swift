import DequeModule
import Synchronization

/// At most `limit` holders at once; others wait their turn for a bounded time. The report API runs its costly
/// reports within one, smaller than its database pool, so that they never take every connection.
final class ConcurrencyLimit: Sendable {
    let limit: Int
    private let state: Mutex<State>

    private struct State {
        var holders = 0
        var nextWaiter = 0
        /// Waiting for a turn, oldest first; resumed with true when handed one, false when they gave up.
        var waiters = Deque<(id: Int, continuation: CheckedContinuation<Bool, Never>)>()
    }

    init(limit: Int) {
        self.limit = max(1, limit)
        self.state = Mutex(State())
    }

    /// A turn held: it ends when the last reference to it goes (a streamed answer's body holds it until it is
    /// written, or dropped unwritten).
    final class Turn: Sendable {
        private let limit: ConcurrencyLimit

        fileprivate init(_ limit: ConcurrencyLimit) {
            self.limit = limit
        }

        deinit {
            limit.endTurn()
        }
    }

    /// A turn, waiting up to `patience` for one; nil when none came in time (or the task was cancelled).
    func turn(waitingUpTo patience: Duration) async -> Turn? {
        await takeTurn(waitingUpTo: patience) ? Turn(self) : nil
    }

    private func takeTurn(waitingUpTo patience: Duration) async -> Bool {
        let hasTurn = state.withLock { state in
            guard state.holders < limit else { return false }
            state.holders += 1
            return true
        }
        if hasTurn { return true }
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        // The wait and its timer race; a turn handed over just as the timer fired is still taken.
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.waitForTurn(id) }
            group.addTask {
                try? await Task.sleep(for: patience)
                return false
            }
            var handed = await group.next() ?? false
            group.cancelAll()
            while let next = await group.next() { handed = handed || next }
            return handed
        }
    }

    private func waitForTurn(_ id: Int) async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let handed = state.withLock { state -> Bool? in
                    if Task.isCancelled { return false }
                    guard state.holders < limit else {
                        state.waiters.append((id, continuation))
                        return nil
                    }
                    state.holders += 1
                    return true
                }
                if let handed { continuation.resume(returning: handed) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
            }
            waiter?.continuation.resume(returning: false)
        }
    }

    fileprivate func endTurn() {
        let next = state.withLock { state in
            guard let next = state.waiters.popFirst() else {
                state.holders -= 1
                return nil as CheckedContinuation<Bool, Never>?
            }
            return next.continuation
        }
        next?.resume(returning: true)
    }
}
