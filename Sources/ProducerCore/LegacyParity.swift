import Basics
import Foundation
import Logging
import PostgresClient

/// `producer parity`: whether the report API answers what the Flask service's SQL gives over the legacy database,
/// day by day (`daily_usage`: used tokens by the day of their `created_at`, or `used_at`), and member by member
/// (visits: used tokens), while both run side by side.
public struct LegacyParity: Sendable {
    public var legacy: LegacyBackfill
    public var api: ReportAPIClient

    public init(legacy: LegacyBackfill, api: ReportAPIClient) {
        self.legacy = legacy
        self.api = api
    }

    /// One count that differs.
    public struct Difference: Sendable, Equatable {
        /// A day (`YYYY-MM-DD`) or a member's id.
        public var key: String
        public var legacy: Int
        public var pipeline: Int
    }

    public struct Report: Sendable, Equatable {
        /// Days with check-ins on either side.
        public var days: Int
        /// Check-ins of those days in the legacy database.
        public var checkins: Int
        /// Members with visits on either side.
        public var members: Int
        public var differentDays: [Difference]
        public var differentMembers: [Difference]

        public var agrees: Bool { differentDays.isEmpty && differentMembers.isEmpty }
    }

    /// Compares the days from `from` to `to` (each open when nil) in `zone`, and every member's visits. The members'
    /// visits are over all time, read in the legacy database just before the API: a check-in that lands between the
    /// two reads, and that following has not published yet, makes a member differ, so the members that differ are read
    /// again after `settle`, once.
    public func compare(
        from: LocalDate?, to: LocalDate?, zone: String, settle: Duration = .seconds(10), logger: Logger
    ) async throws -> Report {
        let legacyDays = try await legacyCounts(
            """
            SELECT to_char(day, 'YYYY-MM-DD'), count(*) FROM (
                SELECT ((\(legacy.timeColumn.rawValue) AT TIME ZONE $1) AT TIME ZONE $2)::date AS day
                FROM tokens WHERE used_at IS NOT NULL
            ) used
            WHERE ($3::date IS NULL OR day >= $3::date) AND ($4::date IS NULL OR day <= $4::date)
            GROUP BY day
            """, [legacy.sourceTimeZone, zone, from?.description, to?.description], logger: logger)
        var query = "tz=\(zone)"
        if let from { query += "&from=\(from)" }
        if let to { query += "&to=\(to)" }
        let pipelineDays = try await answer([String: Int].self, "/api/reports/daily_usage?" + query)
        var report = Report(
            days: Set(legacyDays.keys).union(pipelineDays.keys).count,
            checkins: legacyDays.values.reduce(0, +), members: 0,
            differentDays: Self.differences(legacyDays, pipelineDays), differentMembers: [])

        let members = try await memberVisits(logger: logger)
        report.members = Set(members.legacy.keys).union(members.pipeline.keys).count
        var differentMembers = Self.differences(members.legacy, members.pipeline)
        if !differentMembers.isEmpty {
            try await Task.sleep(for: settle)
            let again = try await memberVisits(logger: logger)
            let keys = Set(differentMembers.map(\.key))
            differentMembers = Self.differences(
                again.legacy.filter { keys.contains($0.key) }, again.pipeline.filter { keys.contains($0.key) })
        }
        report.differentMembers = differentMembers
        return report
    }

    /// Every member's visits: used tokens in the legacy database, `user_visits` in the API.
    private func memberVisits(logger: Logger) async throws -> (legacy: [String: Int], pipeline: [String: Int]) {
        let legacyMembers = try await legacyCounts(
            "SELECT user_id::text, count(*) FROM tokens WHERE used_at IS NOT NULL GROUP BY user_id", [],
            logger: logger)
        struct UserVisits: Decodable {
            var visits: Int
        }
        let pipelineMembers = try await answer([String: UserVisits].self, "/api/reports/user_visits").mapValues(
            \.visits)
        return (legacyMembers, pipelineMembers)
    }

    private func legacyCounts(_ sql: String, _ parameters: [(any PostgresEncodable)?], logger: Logger) async throws
        -> [String: Int]
    {
        try await PostgresConnection.withConnection(legacy.legacy, logger: logger) { connection in
            var counts: [String: Int] = [:]
            for row in try await connection.query(sql, parameters).rows { counts[try row.string(0)] = try row.int(1) }
            return counts
        }
    }

    private func answer<T: Decodable>(_ type: T.Type, _ target: String) async throws -> T {
        let (status, body) = try await api.get(target)
        guard status == 200 else {
            let detail = String(decoding: body.prefix(200), as: UTF8.self)
            throw ReportAPIClientError(message: "the report API answered \(status) to \(target): \(detail)")
        }
        return try JSONDecoder().decode(T.self, from: Data(body))
    }

    /// The keys whose counts differ, a missing count being 0, in key order (numeric keys by their number).
    static func differences(_ legacy: [String: Int], _ pipeline: [String: Int]) -> [Difference] {
        Set(legacy.keys).union(pipeline.keys)
            .map { Difference(key: $0, legacy: legacy[$0] ?? 0, pipeline: pipeline[$0] ?? 0) }
            .filter { $0.legacy != $0.pipeline }
            .sorted { (Int($0.key) ?? 0, $0.key) < (Int($1.key) ?? 0, $1.key) }
    }
}
