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
    /// Waiters whose time ran out before they were enqueued.
    private var expired: Set<Int> = []
    private var isClosed = false
    /// Who waits in `close()` for the lent connections to come back.
    private var closers: [CheckedContinuation<Void, Never>] = []

    /// What a waiting request is handed: an idle connection, a free slot to open one in, or nothing in time.
    private enum Handoff: Sendable {
        case connection(PostgresConnection)
        case slot
        case timedOut
    }

    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Handoff, Never>
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

    /// Closes every connection, waiting for those lent to come back first; a request after this throws `closed`.
    public func close() async {
        isClosed = true
        while let waiter = waiters.popFirst() { waiter.continuation.resume(returning: .timedOut) }
        let closing = idle
        idle.removeAll()
        openCount -= closing.count
        for connection in closing { await connection.close() }
        if openCount > 0 { await withCheckedContinuation { closers.append($0) } }
    }

    /// A connection, and whether it was idle in the pool rather than opened for this request.
    private func acquire() async throws -> (PostgresConnection, wasIdle: Bool) {
        guard !isClosed else { throw PostgresError(.closed, "the database connections were closed") }
        if let connection = idle.popLast() { return (connection, true) }
        if openCount < maxConnections {
            openCount += 1
        } else {
            switch await waitForHandoff() {
            case .connection(let connection): return (connection, false)
            case .slot: break
            case .timedOut:
                guard !isClosed else { throw PostgresError(.closed, "the database connections were closed") }
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

    /// Waits to be handed a connection or a slot, for `acquireTimeout` at most, or until the task is cancelled.
    private func waitForHandoff() async -> Handoff {
        let id = nextWaiterID
        nextWaiterID += 1
        let timeout = acquireTimeout
        defer { expired.remove(id) }
        return await withTaskGroup(of: Handoff?.self) { group in
            group.addTask { await self.enqueueWaiter(id) }
            // Nil when the time is up or the task was cancelled.
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            while let next = await group.next() {
                if let handoff = next {
                    group.cancelAll()
                    return handoff
                }
                // Ends the wait, unless the waiter was served meanwhile: then what it was handed is the answer.
                hand(.timedOut, toWaiter: id)
            }
            return .timedOut
        }
    }

    private func enqueueWaiter(_ id: Int) async -> Handoff {
        guard expired.remove(id) == nil else { return .timedOut }
        return await withCheckedContinuation { waiters.append(Waiter(id: id, continuation: $0)) }
    }

    /// Ends the wait of waiter `id`, if it still waits, or before it begins.
    private func hand(_ handoff: Handoff, toWaiter id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else {
            expired.insert(id)
            return
        }
        waiters.remove(at: index).continuation.resume(returning: handoff)
    }

    private func release(_ connection: PostgresConnection) async {
        guard connection.isUsable, !isClosed else {
            if !isClosed { logger.debug("Dropping a broken database connection") }
            await connection.close()
            releaseSlot()
            return
        }
        if let waiter = waiters.popFirst() {
            waiter.continuation.resume(returning: .connection(connection))
        } else {
            idle.append(connection)
        }
    }

    /// A connection slot became free: hand it to a waiter, who opens a connection in it, or keep it.
    private func releaseSlot() {
        if let waiter = waiters.popFirst() {
            waiter.continuation.resume(returning: .slot)
        } else {
            openCount -= 1
            if isClosed, openCount == 0 {
                for closer in closers { closer.resume() }
                closers.removeAll()
            }
        }
    }
}
