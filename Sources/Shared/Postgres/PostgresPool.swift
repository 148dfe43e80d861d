import Basics
import DequeModule
import Logging

/// A small pool of PostgreSQL connections for a server that answers many requests at once.
///
/// Connections are opened on demand up to `maxConnections` and reused; one that broke is dropped, and the next
/// request opens a fresh one, so the pool recovers by itself once the database is back. A caller waits for a
/// connection at most `acquireTimeout`, then gets `poolExhausted`: slow statements or slow callers make others
/// fail fast rather than queue without end.
public actor PostgresPool {
    public nonisolated let configuration: PostgresConfiguration
    public nonisolated let maxConnections: Int
    public nonisolated let acquireTimeout: Duration
    private let logger: Logger
    private var idle: [PostgresConnection] = []
    private var openCount = 0
    /// Requests waiting for a connection, oldest first.
    private var waiters = Deque<Waiter>()
    private var nextWaiterID = 0

    /// What a waiting request is handed: an idle connection, a free slot to open one in, or nothing in time.
    private enum Handoff {
        case connection(PostgresConnection)
        case slot
        case timedOut
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Handoff, Never>
        /// Hands the waiter `.timedOut` once its wait is over; cancelled when it is served first.
        var timer: Task<Void, Never>
    }

    public init(
        configuration: PostgresConfiguration, maxConnections: Int, acquireTimeout: Duration = .seconds(1),
        logger: Logger
    ) {
        self.configuration = configuration
        self.maxConnections = max(1, maxConnections)
        self.acquireTimeout = acquireTimeout
        self.logger = logger
    }

    /// Lends a connection to `body` and takes it back afterwards, whatever `body` does. `body` runs in the
    /// caller's context; only taking and returning the connection go through the pool. When the caller is cancelled
    /// (its client went away), the statement it runs is cancelled in PostgreSQL.
    ///
    /// A connection that sat idle may have been closed by its server meanwhile (a restart, a standby stopped, so that
    /// the next connection settles on the primary): when `body` breaks such a connection, it runs again on another,
    /// so `body` must be safe to repeat, as a read is.
    public nonisolated func withConnection<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        while true {
            let (connection, wasIdle) = try await acquire()
            do {
                let result = try await connection.withCancellableStatements { try await body(connection) }
                await release(connection)
                return result
            } catch {
                await release(connection)
                // Each such attempt drops an idle connection, so this ends on a fresh one at the latest.
                if wasIdle, !connection.isUsable, error is PostgresError { continue }
                throw error
            }
        }
    }

    /// A connection, and whether it was idle in the pool rather than opened for this request.
    private func acquire() async throws -> (PostgresConnection, wasIdle: Bool) {
        if let connection = idle.popLast() { return (connection, true) }
        if openCount < maxConnections {
            openCount += 1
        } else {
            switch await waitForHandoff() {
            case .connection(let connection): return (connection, false)
            case .slot: break
            case .timedOut:
                throw PostgresError(
                    .poolExhausted,
                    "every database connection stayed busy for \(acquireTimeout.milliseconds) ms; try again shortly")
            }
        }
        do {
            return (try await PostgresConnection.connect(configuration, logger: logger), false)
        } catch {
            releaseSlot()
            throw error
        }
    }

    private func waitForHandoff() async -> Handoff {
        let id = nextWaiterID
        nextWaiterID += 1
        let timeout = acquireTimeout
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let timer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    await self?.hand(.timedOut, toWaiter: id)
                }
                waiters.append(Waiter(id: id, continuation: continuation, timer: timer))
            }
        } onCancel: {
            Task { await self.hand(.timedOut, toWaiter: id) }
        }
    }

    /// Ends the wait of waiter `id`, if it still waits.
    private func hand(_ handoff: Handoff, toWaiter id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters.remove(at: index)
        waiter.timer.cancel()
        waiter.continuation.resume(returning: handoff)
    }

    private func release(_ connection: PostgresConnection) {
        guard connection.isUsable else {
            logger.debug("Dropping a broken database connection")
            releaseSlot()
            return
        }
        if let waiter = waiters.popFirst() {
            waiter.timer.cancel()
            waiter.continuation.resume(returning: .connection(connection))
        } else {
            idle.append(connection)
        }
    }

    /// A connection slot became free: hand it to a waiter, who opens a connection in it, or keep it.
    private func releaseSlot() {
        if let waiter = waiters.popFirst() {
            waiter.timer.cancel()
            waiter.continuation.resume(returning: .slot)
        } else {
            openCount -= 1
        }
    }
}
