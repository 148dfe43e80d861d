import DequeModule
import Logging

/// A small pool of PostgreSQL connections for a server that answers many requests at once (the report API).
///
/// Connections are opened on demand up to `maxConnections` and reused; one that broke is dropped, and the next
/// request opens a fresh one, so the pool recovers by itself once the database is back.
public actor PostgresPool {
    public nonisolated let configuration: PostgresConfiguration
    public nonisolated let maxConnections: Int
    private let logger: Logger
    private var idle: [PostgresConnection] = []
    private var openCount = 0
    /// Requests waiting for a connection; resumed with an idle connection, or with nil to open one themselves.
    private var waiters = Deque<CheckedContinuation<PostgresConnection?, Never>>()

    public init(configuration: PostgresConfiguration, maxConnections: Int, logger: Logger) {
        self.configuration = configuration
        self.maxConnections = max(1, maxConnections)
        self.logger = logger
    }

    /// Lends a connection to `body` and takes it back afterwards, whatever `body` does. `body` runs in the
    /// caller's context; only taking and returning the connection go through the pool.
    public nonisolated func withConnection<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await acquire()
        do {
            let result = try await body(connection)
            await release(connection)
            return result
        } catch {
            await release(connection)
            throw error
        }
    }

    private func acquire() async throws -> PostgresConnection {
        if let connection = idle.popLast() { return connection }
        if openCount >= maxConnections {
            if let connection = await withCheckedContinuation({ waiters.append($0) }) { return connection }
        } else {
            openCount += 1
        }
        do {
            return try await PostgresConnection.connect(configuration, logger: logger)
        } catch {
            releaseSlot()
            throw error
        }
    }

    private func release(_ connection: PostgresConnection) {
        guard connection.isUsable else {
            logger.debug("Dropping a broken database connection")
            releaseSlot()
            return
        }
        if let waiter = waiters.popFirst() {
            waiter.resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }

    /// A connection slot became free: hand it to a waiter, who opens a connection in it, or keep it.
    private func releaseSlot() {
        if let waiter = waiters.popFirst() {
            waiter.resume(returning: nil)
        } else {
            openCount -= 1
        }
    }
}
