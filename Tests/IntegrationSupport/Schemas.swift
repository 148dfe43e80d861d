import Basics
import ConsumerCore
import Foundation
import Pipeline
import PostgresClient
import Testing

/// Schemas of a test's own in the real PostgreSQL, and what tests do to them.
public enum Schemas {
    /// A migrated schema of the test's own, with `users` users of one visit each.
    private static func migrated(users: Int = 0) async throws -> String {
        let schema = TestServers.uniqueName("migrated")
        try await PostgresConnection.withConnection(TestServers.database(schema: schema), logger: TestServers.logger) {
            _ = try await Migrator(schema: schema, zones: ["UTC"]).run(on: $0, logger: TestServers.logger)
            try await $0.execute(
                "INSERT INTO user_activity (user_id, visits) SELECT g, 1 FROM generate_series(1, \(users)) AS g")
        }
        return schema
    }

    /// Runs `body` with a migrated schema (`migrated`), dropped afterwards whether `body` threw or not.
    public static func withMigrated<T>(users: Int = 0, _ body: (String) async throws -> T) async throws -> T {
        try await dropping(migrated(users: users), body)
    }

    /// Runs `body` with the name of a schema no other test uses, which `body` may create; dropped afterwards.
    public static func withName<T>(_ prefix: String, _ body: (String) async throws -> T) async throws -> T {
        try await dropping(TestServers.uniqueName(prefix), body)
    }

    private static func dropping<T>(_ schema: String, _ body: (String) async throws -> T) async throws -> T {
        try await cleaningUp({ try await drop(schema) }) { try await body(schema) }
    }

    public static func drop(_ schema: String) async throws {
        try await PostgresConnection.withConnection(TestServers.database(), logger: TestServers.logger) {
            try await $0.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE")
        }
    }

    /// A connection holding an exclusive lock on `fold_totals` of `schema` until it rolls back, so that the
    /// summary's query waits.
    public static func lockFoldTotals(_ schema: String) async throws -> PostgresConnection {
        let locker = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        try await locker.execute("BEGIN; LOCK TABLE fold_totals IN ACCESS EXCLUSIVE MODE")
        return locker
    }

    /// Waits until a statement waits for a lock on `table` of `database` (a name its search path resolves). Other
    /// tests' lock waits, which run meanwhile, do not count.
    public static func waitForALockWait(on table: String, in database: PostgresConfiguration) async throws {
        let waited = try await PostgresConnection.withConnection(database, logger: TestServers.logger) { observer in
            for _ in 0..<500 {
                let waiting = try await observer.query(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass($1)", [table])
                if try waiting[0].int(0) > 0 { return true }
                try await Task.sleep(for: .milliseconds(10))
            }
            return false
        }
        if !waited { Issue.record("no statement came to wait for the lock on \(table)") }
    }

    /// Folds one check-in of `user` into `schema`, committed.
    public static func fold(user: Int32, into schema: String) async throws {
        let event = Event(
            id: UUID(), kind: .checkin, userID: user, occurredAt: Timestamp(year: 2023, month: 2, day: 8, hour: 9),
            spaceID: "hq")
        try await PostgresConnection.withConnection(TestServers.database(schema: schema), logger: TestServers.logger) {
            _ = try await $0.withTransaction { try RollupWriter().fold([event], on: $0) }
        }
    }
}
