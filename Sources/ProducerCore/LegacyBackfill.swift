import Basics
import Foundation
import Logging
import Pipeline
import PostgresClient

/// The history of the legacy Flask database as events (docs/deploy.md, "Moving off the Flask service"): each user a `user_joined` at `joined_at`,
/// each used token a `checkin` at `created_at` (or `used_at`), with ids derived from the legacy ids, so that a
/// backfill run twice counts everything once.
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

    public init(legacy: PostgresConfiguration, timeColumn: TimeColumn = .createdAt, sourceTimeZone: String = "UTC") {
        self.legacy = legacy
        self.timeColumn = timeColumn
        self.sourceTimeZone = sourceTimeZone
    }

    /// Users, then used tokens, a page at a time from cursors; `total` is told first, for progress.
    public func events(
        logger: Logger, total: (Int) -> Void, page: ([Event]) async throws -> Void
    ) async throws {
        try await PostgresConnection.withConnection(legacy, logger: logger) { connection in
            try await connection.execute("BEGIN READ ONLY")
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
                try await page(
                    try rows.map { row in
                        Event(
                            id: UUID(version5: "user:\(try row.int(0))", namespace: .legacyBackfillNamespace),
                            kind: .userJoined, userID: Int32(try row.int(0)), occurredAt: try Self.timestamp(row, 1))
                    })
            }
            while true {
                let rows = try await connection.query("FETCH 1000 FROM legacy_tokens").rows
                if rows.isEmpty { break }
                try await page(
                    try rows.map { row in
                        Event(
                            id: UUID(version5: "token:\(try row.int(0))", namespace: .legacyBackfillNamespace),
                            kind: .checkin, userID: Int32(try row.int(1)), occurredAt: try Self.timestamp(row, 2))
                    })
            }
            try await connection.execute("COMMIT")
        }
    }

    private static func timestamp(_ row: PostgresRow, _ column: Int) throws -> Timestamp {
        guard let timestamp = try row.optionalTimestamp(column) else {
            throw PostgresError(.unexpectedResult, "a legacy timestamp is NULL")
        }
        return timestamp
    }
}
