import Basics
import Pipeline
import PostgresClient

/// The reports' queries, on one connection lent by `PostgresReportRepository.read(_:)`. Every report reads
/// pre-aggregated rows:
/// the local-day rows of a zone that `consumer migrate` marked ready, else the 15-minute rows, which are exact for any
/// zone; unique visitors and top members read the members' days of a ready zone, else the members' 15-minute rows.
struct PostgresReportQueries: ReportQueries {
    let connection: PostgresConnection
    let readyZones: ReadyZones

    /// The most days a report in a zone without daily rows may span: it is computed from the 15-minute rows, and
    /// three years of them for 20 spaces took about 0.6 s here, well within the default statement timeout.
    static let maxQuarterHourRangeDays = 1_096

    func isFolded(_ zone: String) async throws -> Bool {
        try await readyZones.contains(zone) { try await ReadyZones.read(on: connection) }
    }

    /// The first and last local days in `zone` with a visit, nil without data.
    func daysWithData(in zone: String) async throws -> (first: LocalDate, last: LocalDate)? {
        let bounds = try await connection.query(
            """
            SELECT ((min(bucket_start) AT TIME ZONE $1::text)::date)::text,
                   ((max(bucket_start) AT TIME ZONE $1::text)::date)::text
            FROM visits_quarter_hour
            """, [zone])[0]
        guard let first = bounds[0].flatMap({ LocalDate($0) }), let last = bounds[1].flatMap({ LocalDate($0) }) else {
            return nil
        }
        return (first, last)
    }

    /// Refuses a range in a zone without daily rows that spans more than `maxQuarterHourRangeDays` days with data.
    private func checkQuarterHourRange(_ query: UsageQuery, report: String? = nil) async throws {
        guard let data = try await daysWithData(in: query.zone) else { return }
        let days = query.days(within: data).count
        guard days > Self.maxQuarterHourRangeDays else { return }
        throw QueryError(
            "from..to spans \(days) days of data in \(query.zone), a zone without daily rows (not in "
                + "REPORT_TIMEZONES), where \(report ?? "a report") may span \(Self.maxQuarterHourRangeDays) days at "
                + "most: narrow from and to, or ask in a zone of REPORT_TIMEZONES")
    }

    /// Visits per local day, ascending; days without visits are left out, or listed as 0 with `fill=zero` within
    /// the days with data.
    func dailyUsage(_ query: UsageQuery) async throws -> [(day: String, visits: Int)] {
        let sql: String
        if try await isFolded(query.zone) {
            sql = """
                SELECT day::text, sum(visits)::bigint FROM visits_local_day
                WHERE zone = $1 AND day >= coalesce($2::date, '-infinity') AND day <= coalesce($3::date, 'infinity')
                  AND ($4::text IS NULL OR space_id = $4)
                GROUP BY day ORDER BY day
                """
        } else {
            try await checkQuarterHourRange(query)
            // Each 15-minute row falls in the local day whose midnight (as an instant) is the last one before it:
            // a binary search among the range's midnights, instead of a time zone conversion per row. The range is
            // cut to the days with data, so a far `from` or `to` generates no empty days.
            sql = """
                \(Self.rangeMidnights)
                SELECT (span.first + days.number - 1)::text, days.visits
                FROM span, (
                    SELECT width_bucket(v.bucket_start, midnights.at) AS number, sum(v.visits)::bigint AS visits
                    FROM visits_quarter_hour v, midnights
                    WHERE v.bucket_start >= midnights.at[1] AND v.bucket_start < midnights.at[cardinality(midnights.at)]
                      AND ($4::text IS NULL OR v.space_id = $4)
                    GROUP BY 1
                ) AS days
                ORDER BY days.number
                """
        }
        let rows = try await connection.query(sql, query.parameters)
        let days = try rows.rows.map { (day: try $0.string(0), visits: try $0.int(1)) }
        return try await zeroFilled(days, query)
    }

    /// `days` with every day of the query's range that lies within the days with data listed, 0 where absent, when
    /// the query asks for it: never more days than the data spans, or than the range limit allows.
    private func zeroFilled(_ days: [(day: String, visits: Int)], _ query: UsageQuery) async throws
        -> [(day: String, visits: Int)]
    {
        guard query.fillsZeros else { return days }
        return try query.zeroFilled(days, within: try await daysWithData(in: query.zone))
    }

    /// Distinct members per local day, ascending (days without visits left out, or 0 with `fill=zero`), and over the
    /// whole range: a member who came on several days, or to several spaces, counts once in the total. In a zone of
    /// `REPORT_TIMEZONES`, from the members' days; in any other, from the members' 15-minute rows between the range's
    /// local midnights, bounded as the reports of 15-minute rows are.
    func uniqueVisitors(_ query: UsageQuery) async throws -> (days: [(day: String, visits: Int)], total: Int) {
        let (days, total): ([(day: String, visits: Int)], Int)
        if try await isFolded(query.zone) {
            let members = try await memberDays(query)
            (days, total) = (members.uniqueVisitorsPerDay, members.uniqueVisitors)
        } else {
            try await checkQuarterHourRange(query, report: "unique_visitors")
            // Each member's row falls in the local day whose midnight is the last one before it (the binary search
            // of daily_usage); the range's total, with a NULL day, is sorted last and is there even without rows.
            let rows = try await connection.query(
                """
                \(Self.rangeMidnights), members AS MATERIALIZED (
                    SELECT DISTINCT width_bucket(m.bucket_start, midnights.at) AS number, m.user_id
                    FROM member_visits m, midnights
                    WHERE m.bucket_start >= midnights.at[1] AND m.bucket_start < midnights.at[cardinality(midnights.at)]
                      AND ($4::text IS NULL OR m.space_id = $4)
                )
                SELECT (span.first + members.number - 1)::text, count(*)::bigint
                FROM span, members GROUP BY span.first, members.number
                UNION ALL
                SELECT NULL, count(*) FROM (SELECT DISTINCT user_id FROM members) AS everyone
                ORDER BY 1 NULLS LAST
                """, query.parameters)
            days = try rows.rows.dropLast().map { (day: try $0.string(0), visits: try $0.int(1)) }
            total = try rows[rows.count - 1].int(1)
        }
        return (try await zeroFilled(days, query), total)
    }

    /// The `limit` members with the most visits over the range, most first (ties by ascending id), with their join
    /// times. All time and all spaces, from the users' totals; in a zone of `REPORT_TIMEZONES`, from the members'
    /// days; in any other, from the members' 15-minute rows, bounded as the reports of 15-minute rows are.
    func topMembers(_ query: TopMembersQuery) async throws -> [UserVisits] {
        let range = query.range
        if range.from == nil, range.to == nil, range.space == nil {
            let rows = try await connection.query(
                """
                SELECT user_id, visits, joined_at FROM user_activity
                WHERE visits > 0 ORDER BY visits DESC, user_id LIMIT $1
                """, [query.limit])
            return try rows.rows.map(Self.userVisits)
        }
        if try await isFolded(range.zone) {
            return try await memberDays(range).topMembers(limit: query.limit, on: connection)
        }
        try await checkQuarterHourRange(range, report: "top_members")
        let rows = try await connection.query(
            """
            \(Self.rangeMidnights), visits AS (
                SELECT m.user_id, sum(m.visits)::bigint AS visits
                FROM member_visits m, midnights
                WHERE m.bucket_start >= midnights.at[1] AND m.bucket_start < midnights.at[cardinality(midnights.at)]
                  AND ($4::text IS NULL OR m.space_id = $4) AND m.user_id > 0
                GROUP BY m.user_id ORDER BY 2 DESC, 1 LIMIT $5
            )
            SELECT v.user_id, v.visits, u.joined_at FROM visits v LEFT JOIN user_activity u USING (user_id)
            ORDER BY 2 DESC, 1
            """, range.parameters + [query.limit])
        return try rows.rows.map(Self.userVisits)
    }

    /// The members' days of the query's range (its space's, or those of any space), with the members' rows that the
    /// compactor has not taken yet added, read in one statement, one snapshot: the days and the watermark that says
    /// which rows they hold were committed together.
    private func memberDays(_ query: UsageQuery) async throws -> MemberRange {
        let rows = try await connection.query(
            """
            SELECT day::text, members, repeats, NULL::int, NULL::int, NULL::int FROM member_days
            WHERE zone = $1 AND space_id = coalesce($4::text, '')
              AND day >= coalesce($2::date, '-infinity') AND day <= coalesce($3::date, 'infinity')
            UNION ALL
            SELECT (m.bucket_start AT TIME ZONE $1::text)::date::text, NULL, NULL, m.user_id, o.ordinal, m.visits
            FROM member_visits m LEFT JOIN member_ordinals o USING (user_id)
            WHERE m.appended_by >= (SELECT compacted_below FROM member_compaction)
              AND \(Self.quarterHourRange) AND ($4::text IS NULL OR m.space_id = $4)
            """, query.parameters)
        var range = MemberRange()
        for row in rows.rows {
            let day = try row.string(0)
            if row[1] != nil {
                range.add(day: day, presence: try row.bytes(1), repeats: try row.bytes(2))
            } else {
                range.add(
                    day: day, userID: Int32(try row.int(3)), ordinal: row[4].flatMap { Int32($0) },
                    visits: Int32(try row.int(5)))
            }
        }
        return range
    }

    /// Visits per ISO weekday (1 is Monday) and local hour over the range: the busy hours' heat map. Cells without
    /// visits are left out.
    func weekdayHours(_ query: UsageQuery) async throws -> [Int: [Int: Int]] {
        var cells: [Int: [Int: Int]] = [:]
        if try await isFolded(query.zone) {
            let rows = try await connection.query(Self.localWeekdayHoursSQL, query.parameters)
            for row in rows.rows {
                let weekday = try row.int(0)
                for hour in HourColumns.names.indices where row[hour + 1] != nil {
                    cells[weekday, default: [:]][hour] = try row.int(hour + 1)
                }
            }
        } else {
            try await checkQuarterHourRange(query)
            let rows = try await connection.query(Self.quarterHourWeekdaysSQL, query.parameters)
            for row in rows.rows { cells[try row.int(0), default: [:]][try row.int(1)] = try row.int(2) }
        }
        return cells
    }

    /// Visits per local hour of the day (0 to 23) over the range; hours without visits are left out.
    func hourlyUsage(_ query: UsageQuery) async throws -> [Int: Int] {
        var hours: [Int: Int] = [:]
        if try await isFolded(query.zone) {
            let row = try await connection.query(Self.localHoursSQL, query.parameters)[0]
            for hour in HourColumns.names.indices where row[hour] != nil {
                hours[hour] = try row.int(hour)
            }
        } else {
            try await checkQuarterHourRange(query)
            let rows = try await connection.query(Self.quarterHoursSQL, query.parameters)
            for row in rows.rows { hours[try row.int(0)] = try row.int(1) }
        }
        return hours
    }

    /// A page of users with at least one visit, by ascending id after `after`.
    func userVisits(after: Int32, limit: Int) async throws -> [UserVisits] {
        let rows = try await connection.query(
            """
            SELECT user_id, visits, joined_at FROM user_activity
            WHERE visits > 0 AND user_id > $1 ORDER BY user_id LIMIT $2
            """, [after, limit])
        return try rows.rows.map(Self.userVisits)
    }

    /// The spaces with visits, ascending, from the local-day rows (every folded zone has a row for each).
    func spaces() async throws -> [String] {
        let rows = try await connection.query("SELECT DISTINCT space_id FROM visits_local_day ORDER BY 1")
        return try rows.rows.map { try $0.string(0) }
    }

    func summary() async throws -> Summary {
        let row = try await connection.query(
            """
            SELECT coalesce(sum(checkins), 0)::bigint, coalesce(sum(users), 0)::bigint,
                   min(first_checkin_at), max(last_checkin_at), max(last_folded_at)
            FROM fold_totals
            """)[0]
        return Summary(
            checkins: try row.int(0), users: try row.int(1), firstCheckin: try row.optionalTimestamp(2),
            lastCheckin: try row.optionalTimestamp(3), lastFolded: try row.optionalTimestamp(4))
    }

    static func userVisits(_ row: PostgresRow) throws -> UserVisits {
        UserVisits(userID: try row.int(0), visits: try row.int(1), joinedAt: try row.optionalTimestamp(2))
    }

    /// The CTEs `span` (from..to in zone `$1`, cut to the first and last days with data) and `midnights` (the
    /// instants of its local midnights, the day after the last included), for the reports of 15-minute rows.
    private static let rangeMidnights = """
        WITH data AS (
            SELECT (min(bucket_start) AT TIME ZONE $1::text)::date AS first,
                   (max(bucket_start) AT TIME ZONE $1::text)::date AS last
            FROM visits_quarter_hour
        ), span AS (
            SELECT greatest($2::date, data.first) AS first, least($3::date, data.last) AS last FROM data
        ), midnights AS (
            SELECT array_agg(day::date::timestamp AT TIME ZONE $1::text ORDER BY day) AS at
            FROM span, generate_series(span.first, span.last + 1, interval '1 day') AS day
        )
        """

    private static let localWeekdayHoursSQL = """
        SELECT extract(isodow FROM day)::int,
               \(HourColumns.names.map { "nullif(sum(\($0)), 0)::bigint" }.joined(separator: ", "))
        FROM visits_local_day
        WHERE zone = $1 AND day >= coalesce($2::date, '-infinity') AND day <= coalesce($3::date, 'infinity')
          AND ($4::text IS NULL OR space_id = $4)
        GROUP BY 1
        """

    private static let quarterHourWeekdaysSQL = """
        SELECT extract(isodow FROM bucket_start AT TIME ZONE $1::text)::int,
               extract(hour FROM bucket_start AT TIME ZONE $1::text)::int, sum(visits)::bigint
        FROM visits_quarter_hour
        WHERE \(quarterHourRange) AND ($4::text IS NULL OR space_id = $4)
        GROUP BY 1, 2
        """

    /// One row, the range's visits in each hour column, NULL for none.
    private static let localHoursSQL = """
        SELECT \(HourColumns.names.map { "nullif(sum(\($0)), 0)::bigint" }.joined(separator: ", "))
        FROM visits_local_day
        WHERE zone = $1 AND day >= coalesce($2::date, '-infinity') AND day <= coalesce($3::date, 'infinity')
          AND ($4::text IS NULL OR space_id = $4)
        """

    private static let quarterHoursSQL = """
        SELECT extract(hour FROM bucket_start AT TIME ZONE $1::text)::int, sum(visits)::bigint FROM visits_quarter_hour
        WHERE \(quarterHourRange) AND ($4::text IS NULL OR space_id = $4)
        GROUP BY 1
        """

    /// The 15-minute buckets from local midnight of `from` to local midnight after `to`, in zone `$1`.
    private static let quarterHourRange = """
        bucket_start >= coalesce($2::date::timestamp AT TIME ZONE $1::text, '-infinity')
          AND bucket_start < coalesce(($3::date + 1)::timestamp AT TIME ZONE $1::text, 'infinity')
        """
}

extension UsageQuery {
    var parameters: [(any PostgresEncodable)?] {
        [zone, from?.description, to?.description, space]
    }
}
