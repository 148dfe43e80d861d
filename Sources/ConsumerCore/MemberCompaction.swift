import Basics
import Logging
import Metrics
import PostgresClient
import ServiceLifecycle

/// The consumer's service that runs `MemberCompactor` every second on a database connection of its own, or less often
/// while compactions take long (a backlog drains), so that they take a quarter of the time at most. Whatever the database
/// answers instead (it is down, read-only, or the schema is not migrated yet), compaction is tried again with backoff,
/// logged once when it starts failing and once when it works again; the reports read the rows it has not compacted
/// yet meanwhile.
public final class MemberCompaction: Service {
    private let configuration: PostgresConfiguration
    private let compactor: MemberCompactor
    private let interval: Duration
    private let logger: Logger
    private let compacted = Counter(label: "coworking_consumer_members_compacted_total")
    private let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))

    public init(
        configuration: PostgresConfiguration, compactor: MemberCompactor = MemberCompactor(),
        interval: Duration = .seconds(1), logger: Logger
    ) {
        self.configuration = configuration
        self.compactor = compactor
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.compactUntilCancelled()
        }
    }

    /// Compacts until the task is cancelled, then closes its connection.
    private func compactUntilCancelled() async {
        var connection: PostgresConnection?
        do {
            try await compact(on: &connection)
        } catch {}
        await connection?.close()
    }

    private func compact(on connection: inout PostgresConnection?) async throws {
        var failing = false
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let moved = try await backoff.retrying(
                isRetriable: { $0 is PostgresError },
                failed: { error, _, _ in
                    if !failing {
                        failing = true
                        logger.warning(
                            "Compacting the members' rows failed; retrying",
                            metadata: [LogKey.error: "\(String(reflecting: error))"])
                    }
                }
            ) {
                let current: PostgresConnection
                if let connection, connection.isUsable {
                    current = connection
                } else {
                    await connection?.close()
                    current = try await PostgresConnection.connect(configuration, logger: logger)
                    connection = current
                }
                let (compactor, schema) = (self.compactor, configuration.schema)
                return try await current.withTransaction { try compactor.compact(on: $0, schema: schema) }
            }
            if failing {
                failing = false
                logger.info("Compacting the members' rows again")
            }
            compacted.increment(by: moved ?? 0)
            // A quarter of the time at most, so that while a backlog drains the folds keep the cores: the rows wait
            // a little longer, the reports read them meanwhile.
            try await Task.sleep(for: max(interval, (ContinuousClock.now - started) * 3))
        }
    }
}
