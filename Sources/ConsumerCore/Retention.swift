import Basics
import Logging
import Metrics
import PostgresClient
import ServiceLifecycle

/// Lets old data go, as the settings say, a few thousand rows per short transaction so that folds never wait long:
/// event ids whose event occurred more than `DEDUP_HORIZON_DAYS` ago (and a day more, as the consumer refuses events
/// past the horizon by its own clock), and the members' rows and days (personal data: who came when) older than
/// `MEMBER_RETENTION_DAYS`. Visits per day and hour, and the users' totals, stay. Runs every minute on a connection of
/// its own, one replica at a time (an advisory lock); a database that fails is tried again at the next turn.
public final class Retention: Service {
    /// What is kept, in days; nil keeps everything.
    public struct Horizons: Sendable, Equatable {
        public var eventIDs: Int?
        public var members: Int?

        public init(eventIDs: Int? = nil, members: Int? = nil) {
            self.eventIDs = eventIDs
            self.members = members
        }

        public var isEmpty: Bool { eventIDs == nil && members == nil }
    }

    private let configuration: PostgresConfiguration
    private let horizons: Horizons
    private let interval: Duration
    private let logger: Logger
    /// Rows deleted per transaction at most.
    static let rowsPerTransaction = 5_000

    public init(
        configuration: PostgresConfiguration, horizons: Horizons, interval: Duration = .seconds(60), logger: Logger
    ) {
        self.configuration = configuration
        self.horizons = horizons
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failing = false
            while !Task.isCancelled {
                do {
                    try await PostgresConnection.withConnection(self.configuration, logger: self.logger) {
                        _ = try await Self.prune(self.horizons, schema: self.configuration.schema, on: $0)
                    }
                    failing = false
                } catch let error as PostgresError {
                    if !failing {
                        self.logger.warning(
                            "Letting old rows go failed; trying again at the next turn",
                            metadata: [LogKey.error: "\(error.debugDescription)"])
                    }
                    failing = true
                } catch {
                    return
                }
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    /// Deletes what lies past `horizons`, in short transactions, unless another replica does; returns the rows
    /// deleted per table.
    @discardableResult
    public static func prune(_ horizons: Horizons, schema: String, on connection: PostgresConnection)
        async throws -> [String: Int]
    {
        var deleted: [String: Int] = [:]
        var statements: [(table: String, sql: String, days: Int)] = []
        if let days = horizons.eventIDs {
            statements.append(("counted_events", deleteOlder("counted_events", "occurred_at"), days + 1))
        }
        if let days = horizons.members {
            statements += [
                ("member_visits", deleteOlder("member_visits", "bucket_start"), days),
                ("member_days", deleteOlder("member_days", "day"), days),
            ]
        }
        for (table, sql, days) in statements {
            while true {
                let count = try await connection.withTransaction { connection -> Int? in
                    let mine = try connection.query(
                        "SELECT pg_try_advisory_xact_lock(hashtext($1))", ["coworking.retention." + schema])[0].bool(0)
                    guard mine else { return nil }
                    return try connection.query(sql, [days, rowsPerTransaction]).affectedRows
                }
                guard let count else { return deleted }
                deleted[table, default: 0] += count
                Counter(label: "coworking_consumer_retention_deleted_total", dimensions: [("table", table)])
                    .increment(by: count)
                if count < rowsPerTransaction { break }
            }
        }
        return deleted
    }

    /// Deletes up to `$2` rows of `table` whose `column` lies more than `$1` days back.
    private static func deleteOlder(_ table: String, _ column: String) -> String {
        """
        DELETE FROM \(table) WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM \(table) WHERE \(column) < now() - make_interval(days => $1::int) LIMIT $2
        ))
        """
    }
}
