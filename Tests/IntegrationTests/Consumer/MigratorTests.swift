import Basics
import Foundation
import IntegrationSupport
import Pipeline
import PostgresClient
import Testing

@testable import ConsumerCore

@Suite("consumer migrate against PostgreSQL")
struct MigratorTests {
    static func connect(_ schema: String) async throws -> PostgresConnection {
        try await PostgresConnection.connect(TestServers.database(schema: schema), logger: TestServers.logger)
    }

    @Test func aSecondRunFindsNothingToDo() async throws {
        try await Schemas.withName("migrate") { schema in
            let migrator = Migrator(schema: schema, zones: ["UTC"])
            let first = try await migrator.run(on: Self.connect(schema), logger: TestServers.logger)
            #expect(
                first
                    == Migrator.Report(
                        appliedVersions: [1, 2, 3, 4, 5, 6, 7], addedZones: ["UTC"], removedZones: [], version: 7))
            let second = try await migrator.run(on: Self.connect(schema), logger: TestServers.logger)
            #expect(second == Migrator.Report(appliedVersions: [], addedZones: [], removedZones: [], version: 7))
            let tables = try await Self.connect(schema).query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", [schema])
            #expect(
                try tables.rows.map { try $0.string(0) } == [
                    "counted_events", "fold_totals", "member_compaction", "member_days", "member_ordinals",
                    "member_visits", "report_zones", "schema_migrations", "user_activity", "visits_local_day",
                    "visits_quarter_hour",
                ])
        }
    }

    @Test func replicasMigratingAtOnceApplyEachStepExactlyOnce() async throws {
        try await Schemas.withName("race") { schema in
            let migrator = Migrator(schema: schema, zones: ["UTC", "Asia/Kolkata"])
            let reports = try await withThrowingTaskGroup(of: Migrator.Report.self) { group in
                for _ in 0..<5 {
                    group.addTask { try await migrator.run(on: Self.connect(schema), logger: TestServers.logger) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(reports.flatMap(\.appliedVersions) == [1, 2, 3, 4, 5, 6, 7])
            #expect(reports.flatMap(\.addedZones).sorted() == ["Asia/Kolkata", "UTC"])
            #expect(reports.allSatisfy { $0.version == 7 })
            let ready = try await Self.connect(schema).query("SELECT zone FROM report_zones WHERE ready ORDER BY zone")
            #expect(try ready.rows.map { try $0.string(0) } == ["Asia/Kolkata", "UTC"])
        }
    }

    @Test func anAddedZoneIsFilledExactlyFromTheQuarterHourRows() async throws {
        try await Schemas.withName("zones") { schema in
            _ = try await Migrator(schema: schema, zones: ["UTC"]).run(
                on: Self.connect(schema), logger: TestServers.logger)
            let connection = try await Self.connect(schema)
            // Kathmandu is UTC+05:45: 18:15Z is 00:00 the next local day, 18:00Z still 23:45 the same day.
            try await connection.query(
                """
                INSERT INTO visits_quarter_hour (bucket_start, space_id, visits) VALUES
                ('2023-02-07 18:00Z', 'hq', 2), ('2023-02-07 18:15Z', 'hq', 3), ('2023-02-07 18:15Z', 'annex', 1),
                ('2023-02-08 09:30Z', 'hq', 4)
                """)
            let report = try await Migrator(schema: schema, zones: ["UTC", "Asia/Kathmandu"]).run(
                on: connection, logger: TestServers.logger)
            #expect(report.addedZones == ["Asia/Kathmandu"])
            let (daily, hourly) = try await connection.localDays(zone: "Asia/Kathmandu")
            #expect(
                daily == [
                    "Asia/Kathmandu 2023-02-07 hq": 2, "Asia/Kathmandu 2023-02-08 annex": 1,
                    "Asia/Kathmandu 2023-02-08 hq": 7,
                ])
            #expect(
                hourly == [
                    "Asia/Kathmandu 2023-02-07 23 hq": 2, "Asia/Kathmandu 2023-02-08 0 annex": 1,
                    "Asia/Kathmandu 2023-02-08 0 hq": 3, "Asia/Kathmandu 2023-02-08 15 hq": 4,
                ])

            let removal = try await Migrator(schema: schema, zones: ["Asia/Kathmandu"]).run(
                on: connection, logger: TestServers.logger)
            #expect(removal.removedZones == ["UTC"])
            #expect(try await connection.localDays(zone: "UTC").daily.isEmpty)
            #expect(try await connection.localDays(zone: "Asia/Kathmandu").daily.count == 3)
        }
    }

    @Test func version2KeepsWhatVersion1Folded() async throws {
        try await Schemas.withName("upgrade") { schema in
            let connection = try await Self.connect(schema)
            // The database as `consumer migrate` left it when version 1 was the newest step.
            try await connection.execute("CREATE SCHEMA \(schema)")
            try await connection.execute(migrations[0].sql)
            try await connection.execute(
                """
                CREATE TABLE schema_migrations (
                    version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
                );
                INSERT INTO schema_migrations (version, description) VALUES (1, 'rollup tables');
                INSERT INTO report_zones (zone, ready, filled_at) VALUES ('UTC', true, now());
                INSERT INTO visits_daily (zone, day, space_id, visits) VALUES
                    ('UTC', '2023-02-07', 'hq', 3), ('UTC', '2023-02-08', 'hq', 1);
                INSERT INTO visits_hourly (zone, day, hour, space_id, visits) VALUES
                    ('UTC', '2023-02-07', 8, 'hq', 2), ('UTC', '2023-02-07', 23, 'hq', 1), ('UTC', '2023-02-08', 0, 'hq', 1);
                INSERT INTO user_activity (user_id, visits, joined_at) VALUES (1, 3, NULL), (2, 1, NULL), (3, 0, now());
                INSERT INTO fold_totals (slot, checkins) VALUES (5, 4);
                """)
            let report = try await Migrator(schema: schema, zones: ["UTC"]).run(
                on: connection, logger: TestServers.logger)
            #expect(
                report
                    == Migrator.Report(
                        appliedVersions: [2, 3, 4, 5, 6, 7], addedZones: [], removedZones: [], version: 7,
                        checkinsWithoutMembers: 4))
            let (daily, hourly) = try await connection.localDays()
            #expect(daily == ["UTC 2023-02-07 hq": 3, "UTC 2023-02-08 hq": 1])
            #expect(hourly == ["UTC 2023-02-07 8 hq": 2, "UTC 2023-02-07 23 hq": 1, "UTC 2023-02-08 0 hq": 1])
            let totals = try await connection.query(
                "SELECT sum(checkins)::bigint, sum(users)::bigint FROM fold_totals")[0]
            #expect(try totals.int(0) == 4)
            #expect(try totals.int(1) == 2, "users with a visit, counted once at the upgrade")
        }
    }

    /// A fold locks its day rows in key order; the removal's delete locks them in the table's order. Here they
    /// are in opposite orders, and a fold holds the first by key when the removal starts: unless the removal waits
    /// for the fold in flight, each waits for the other, and PostgreSQL aborts one of them.
    @Test func removingAZoneWaitsForAFoldInFlightInsteadOfDeadlocking() async throws {
        try await Schemas.withName("unzone") { schema in
            let connection = try await Self.connect(schema)
            _ = try await Migrator(schema: schema, zones: ["UTC", "Asia/Kolkata"]).run(
                on: connection, logger: TestServers.logger)
            let writer = RollupWriter(totalsSlot: 0)
            for day in [8, 7] {
                let event = Event(
                    id: UUID(), kind: .checkin, userID: 1,
                    occurredAt: Timestamp(year: 2023, month: 2, day: day, hour: 9))
                _ = try await connection.withTransaction { try writer.fold([event], on: $0) }
            }

            let fold = try await Self.connect(schema)
            try await fold.execute(
                """
                BEGIN;
                INSERT INTO visits_quarter_hour VALUES ('2023-02-07 09:00Z', 'default', 1)
                    ON CONFLICT (bucket_start, space_id) DO UPDATE SET visits = visits_quarter_hour.visits + 1;
                UPDATE visits_local_day SET visits = visits + 1 WHERE zone = 'UTC' AND day = '2023-02-07'
                """)
            let migrating = try await Self.connect(schema)
            // The plan a table of production size gets for a whole zone: a scan in the table's order, not the key's.
            try await migrating.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
            let migratingBackend = try await migrating.query("SELECT pg_backend_pid()")[0].int(0)
            let removal = Task {
                try await Migrator(schema: schema, zones: ["Asia/Kolkata"]).run(
                    on: migrating, logger: TestServers.logger)
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while try await connection.query(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", [migratingBackend])[0].int(0) == 0
            {
                guard ContinuousClock.now < deadline else {
                    Issue.record("the removal never waited for the fold")
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            try await fold.execute(
                """
                UPDATE visits_local_day SET visits = visits + 1 WHERE zone = 'UTC' AND day = '2023-02-08';
                COMMIT
                """)

            #expect(try await removal.value.removedZones == ["UTC"])
            #expect(try await connection.localDays(zone: "UTC").daily.isEmpty)
            #expect(
                try await connection.localDays(zone: "Asia/Kolkata").daily == [
                    "Asia/Kolkata 2023-02-07 default": 1, "Asia/Kolkata 2023-02-08 default": 1,
                ])
        }
    }

    @Test func aZoneUnknownToPostgreSQLChangesNothing() async throws {
        try await Schemas.withName("badzone") { schema in
            _ = try await Migrator(schema: schema, zones: ["UTC"]).run(
                on: Self.connect(schema), logger: TestServers.logger)
            await #expect(throws: PostgresError.self) {
                try await Migrator(schema: schema, zones: ["UTC", "Not/AZone"]).run(
                    on: Self.connect(schema), logger: TestServers.logger)
            }
            let zones = try await Self.connect(schema).query("SELECT zone FROM report_zones")
            #expect(try zones.rows.map { try $0.string(0) } == ["UTC"])
        }
    }
}
