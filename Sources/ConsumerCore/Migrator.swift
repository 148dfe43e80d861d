import Basics
import Logging
import Pipeline
import PostgresClient

/// What `consumer migrate` does: bring the schema to the latest version and the folded zones in line with
/// `REPORT_TIMEZONES`.
public struct Migrator: Sendable {
    /// The schema the tables live in (`DB_SCHEMA`).
    public var schema: String
    /// The zones to keep local-day rows (with their hours) for.
    public var zones: [String]
    /// `DB_READER_ROLE`: a role that gets USAGE on the schema and SELECT on its tables (the report API's).
    public var readerRole: String?

    public init(schema: String, zones: [String], readerRole: String? = nil) {
        self.schema = schema
        self.zones = zones
        self.readerRole = readerRole
    }

    /// The version that began keeping the members of check-ins (`member_visits`).
    static let membersVersion = 5
    /// The version that began compacting the members' days of each zone (`member_days`).
    static let memberDaysVersion = 6

    /// The newest schema version this program knows.
    public static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// What a run changed.
    public struct Report: Sendable, Equatable {
        public var appliedVersions: [Int]
        public var addedZones: [String]
        public var removedZones: [String]
        public var version: Int
        /// Check-ins folded before version 5 was applied to this schema: their members were not kept, so unique
        /// visitors leave them out.
        public var checkinsWithoutMembers: Int

        public init(
            appliedVersions: [Int], addedZones: [String], removedZones: [String], version: Int,
            checkinsWithoutMembers: Int = 0
        ) {
            self.appliedVersions = appliedVersions
            self.addedZones = addedZones
            self.removedZones = removedZones
            self.version = version
            self.checkinsWithoutMembers = checkinsWithoutMembers
        }
    }

    /// Migrates in one transaction under an advisory lock, so replicas that start together take turns and all
    /// but the first find nothing to do. A failure leaves the database as it was.
    public func run(on connection: PostgresConnection, logger: Logger) async throws -> Report {
        let schema = self.schema
        let zones = self.zones
        let readerRole = self.readerRole
        guard PostgresConfiguration.isPlainIdentifier(schema) else {
            throw PostgresError(.unexpectedResult, "the schema name must be a lower-case SQL identifier")
        }
        if let readerRole, !PostgresConfiguration.isPlainIdentifier(readerRole) {
            throw PostgresError(.unexpectedResult, "the reader role must be a lower-case SQL identifier")
        }
        let report = try await connection.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext($1))", ["coworking.migrate." + schema])
            // No compaction runs while zones change: one that had read the zones before would write a removed
            // zone's members' days, or miss an added zone's.
            try connection.query(
                "SELECT pg_advisory_xact_lock(hashtext($1))", [MemberCompactor.lockKey(schema: schema)])
            // Identifiers cannot be parameters; both were checked to be plain identifiers above.
            try connection.execute("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"")
            try connection.execute(
                """
                CREATE TABLE IF NOT EXISTS "\(schema)".schema_migrations (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            let current = try connection.query("SELECT coalesce(max(version), 0) FROM \"\(schema)\".schema_migrations")[
                0
            ]
            .int(0)
            var applied: [Int] = []
            for migration in migrations where migration.version > current {
                try connection.execute("SET LOCAL search_path TO \"\(schema)\"")
                try connection.execute(migration.sql)
                try connection.query(
                    "INSERT INTO \"\(schema)\".schema_migrations (version, description) VALUES ($1, $2)",
                    [migration.version, migration.description])
                applied.append(migration.version)
            }
            try connection.execute("SET LOCAL search_path TO \"\(schema)\"")
            let checkinsWithoutMembers =
                current > 0 && applied.contains(Self.membersVersion)
                ? try connection.query("SELECT coalesce(sum(checkins), 0)::bigint FROM fold_totals")[0].int(0) : 0
            let (added, removed) = try Self.synchronizeZones(zones, on: connection)
            // Zones kept before version 6 get their members' days from the rows kept so far, as an added zone does.
            let unfilled =
                current > 0 && applied.contains(Self.memberDaysVersion) ? zones.filter { !added.contains($0) } : []
            try MemberCompactor.fill(zones: unfilled + added, schema: schema, on: connection)
            if let readerRole {
                try connection.execute(
                    """
                    GRANT USAGE ON SCHEMA "\(schema)" TO "\(readerRole)";
                    GRANT SELECT ON ALL TABLES IN SCHEMA "\(schema)" TO "\(readerRole)"
                    """)
            }
            return Report(
                appliedVersions: applied, addedZones: added, removedZones: removed,
                version: max(current, applied.last ?? 0), checkinsWithoutMembers: checkinsWithoutMembers)
        }
        for version in report.appliedVersions {
            logger.info("Applied a schema migration", metadata: [LogKey.schemaVersion: "\(version)"])
        }
        if report.checkinsWithoutMembers > 0 {
            logger.warning(
                "Unique visitors leave out the \(report.checkinsWithoutMembers) check-ins folded before schema version 5; a backfill into a new DB_SCHEMA counts them"
            )
        }
        return report
    }

    /// Makes `report_zones` hold exactly `zones`, each added one filled from the 15-minute rows before it is
    /// marked ready (its members' days are filled by the caller, in the same transaction).
    private static func synchronizeZones(_ zones: [String], on connection: isolated PostgresConnection) throws
        -> (added: [String], removed: [String])
    {
        let existing = Set(try connection.query("SELECT zone FROM report_zones").rows.map { try $0.string(0) })
        let removed = existing.subtracting(zones).sorted()
        let added = zones.filter { !existing.contains($0) }
        guard !removed.isEmpty || !added.isEmpty else { return ([], []) }
        for zone in added {
            let known = try connection.query("SELECT count(*) FROM pg_timezone_names WHERE name = $1", [zone])[0].int(0)
            guard known > 0 else {
                throw PostgresError(.unexpectedResult, "PostgreSQL does not know the time zone \(zone)")
            }
        }
        // Consumers fold into every zone of report_zones as they write the 15-minute rows. This lock waits for
        // the batches in flight and holds off new ones, so each visit lands in a new zone's rows exactly once:
        // through this fill, or through a batch committed after it. It also keeps folds off a removed zone's
        // rows while they are deleted: a fold locks its day rows in key order, a delete of a whole zone in the
        // table's order, and the two could deadlock.
        try connection.execute("LOCK TABLE visits_quarter_hour IN SHARE MODE")
        for zone in removed {
            try connection.query("DELETE FROM visits_local_day WHERE zone = $1", [zone])
            try connection.query("DELETE FROM member_days WHERE zone = $1", [zone])
            try connection.query("DELETE FROM report_zones WHERE zone = $1", [zone])
        }
        for zone in added {
            try connection.query("INSERT INTO report_zones (zone) VALUES ($1)", [zone])
            try connection.query(Self.fillSQL, [zone])
            try connection.query("UPDATE report_zones SET ready = true, filled_at = now() WHERE zone = $1", [zone])
        }
        return (added, removed)
    }

    private static let fillSQL = """
        INSERT INTO visits_local_day (zone, day, space_id, visits, \(HourColumns.list))
        SELECT $1::text, day, space_id, sum(visits), \(HourColumns.sums(of: "visits", byHour: "hour"))
        FROM (
            SELECT local.at::date AS day, date_part('hour', local.at)::int AS hour, v.space_id, v.visits
            FROM visits_quarter_hour v
            CROSS JOIN LATERAL (SELECT v.bucket_start AT TIME ZONE $1::text AS at) AS local
            OFFSET 0
        ) AS quarters
        GROUP BY day, space_id
        """
}
