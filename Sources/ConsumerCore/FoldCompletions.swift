import Basics
import Synchronization

/// Where the consumer's folds, each a child task, leave their outcomes for its loop, which takes them in any order
/// and waits for one only when it has nothing else to do (every fold connection busy).
final class FoldCompletions: Sendable {
    struct Completion: Sendable {
        var batch: DeliveryWindow.BatchID
        var outcome: DatabaseStage.Outcome
        /// When the fold committed, which the loop may take a few milliseconds later.
        var committedAt: Timestamp
    }

    private struct State {
        var finished: [Completion] = []
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func add(_ completion: Completion) {
        let waiter = state.withLock { state in
            state.finished.append(completion)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// The completions left since the last call, in the order they came.
    func take() -> [Completion] {
        state.withLock { state in
            defer { state.finished.removeAll() }
            return state.finished
        }
    }

    /// Returns once a completion waits to be taken (at once if one does), or the task is cancelled. One caller at a
    /// time.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    guard state.finished.isEmpty, !Task.isCancelled else { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
