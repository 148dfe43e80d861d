import Basics
import Foundation
import Logging
import Pipeline
import PostgresClient

/// The history of the legacy Flask database as events (docs/deploy.md, "Moving off the Flask service"): each user a
/// `user_joined` at `joined_at`, each used token a `checkin` at `created_at` (or `used_at`), with ids derived from the
/// legacy ids, so that a backfill run twice, or a history followed after it (`follow`), counts everything once.
public struct LegacyBackfill: Sendable {
    /// Which legacy column gives a check-in its time.
    public enum TimeColumn: String, Sendable, CaseIterable {
        /// When the token was issued: the day the Flask service's `daily_usage` counted it under.
        case createdAt = "created_at"
        /// When the token was used at the door.
        case usedAt = "used_at"
    }

    public var legacy: PostgresConfiguration
    public var timeColumn: TimeColumn
    /// The zone the legacy naive `timestamp` columns were written in.
    public var sourceTimeZone: String
    /// How long after it was issued (`created_at`) a token may still be used, and a user's row (by `joined_at`) or a
    /// token's may still commit, for `follow` to see it: what it reads again at each poll.
    public var followWindow: Duration

    public init(
        legacy: PostgresConfiguration, timeColumn: TimeColumn = .createdAt, sourceTimeZone: String = "UTC",
        followWindow: Duration = .seconds(86_400)
    ) {
        self.legacy = legacy
        self.timeColumn = timeColumn
        self.sourceTimeZone = sourceTimeZone
        self.followWindow = followWindow
    }

    /// Users, then used tokens, a page at a time from cursors; `total` is told first, for progress. Returns where
    /// `follow` takes over: what may still change after the history's snapshot.
    @discardableResult
    public func events(
        logger: Logger, total: (Int) -> Void, page: ([Event]) async throws -> Void
    ) async throws -> LegacyCheckpoint {
        try await PostgresConnection.withConnection(legacy, logger: logger) { connection in
            try await connection.execute("BEGIN READ ONLY")
            let checkpoint = try await firstCheckpoint(on: connection)
            let counts = try await connection.query(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tokens WHERE used_at IS NOT NULL)")[0]
            total(try counts.int(0) + counts.int(1))
            // The column name cannot be a parameter; it is one of two fixed names.
            let checkinTime = "\(timeColumn.rawValue) AT TIME ZONE $1::text"
            try await connection.query(
                "DECLARE legacy_users NO SCROLL CURSOR FOR SELECT id, joined_at AT TIME ZONE $1::text FROM users ORDER BY id",
                [sourceTimeZone])
            try await connection.query(
                "DECLARE legacy_tokens NO SCROLL CURSOR FOR SELECT id, user_id, \(checkinTime) FROM tokens "
                    + "WHERE used_at IS NOT NULL ORDER BY id", [sourceTimeZone])
            while true {
                let rows = try await connection.query("FETCH 1000 FROM legacy_users").rows
                if rows.isEmpty { break }
                try await page(try rows.map { Self.userJoined(try $0.int(0), at: try Self.timestamp($0, 1)) })
            }
            while true {
                let rows = try await connection.query("FETCH 1000 FROM legacy_tokens").rows
                if rows.isEmpty { break }
                try await page(
                    try rows.map { Self.checkin(try $0.int(0), user: try $0.int(1), at: try Self.timestamp($0, 2)) }
                )
            }
            try await connection.execute("COMMIT")
            return checkpoint
        }
    }

    static func userJoined(_ id: Int, at time: Timestamp) -> Event {
        Event(
            id: UUID(version5: "user:\(id)", namespace: .legacyBackfillNamespace), kind: .userJoined,
            userID: Int32(id), occurredAt: time)
    }

    static func checkin(_ id: Int, user: Int, at time: Timestamp) -> Event {
        Event(
            id: UUID(version5: "token:\(id)", namespace: .legacyBackfillNamespace), kind: .checkin,
            userID: Int32(user), occurredAt: time)
    }

    static func timestamp(_ row: PostgresRow, _ column: Int) throws -> Timestamp {
        guard let timestamp = try row.optionalTimestamp(column) else {
            throw PostgresError(.unexpectedResult, "a legacy timestamp is NULL")
        }
        return timestamp
    }
}
