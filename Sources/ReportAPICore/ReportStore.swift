import Logging
import Shared
import Synchronization

/// The report API's reads of the rollups. Every report reads pre-aggregated rows: the daily and hourly rows of a
/// zone that `consumer migrate` marked ready, else the 15-minute rows, which are exact for any zone.
public struct ReportStore: Sendable {
    let pool: PostgresPool
    /// One connection of its own for the readiness probe, so that a pool busy with slow reports never makes the
    /// probe wait or fail while the database answers.
    private let probePool: PostgresPool
    private let readyZones: ReadyZones

    public init(pool: PostgresPool) {
        self.pool = pool
        self.probePool = PostgresPool(
            configuration: pool.configuration, maxConnections: 1, acquireTimeout: .seconds(2),
            logger: Logger(label: "report-api.probe"))
        self.readyZones = ReadyZones()
    }

    /// The reports' statement timeout, zero for none.
    var statementTimeout: Duration { pool.configuration.statementTimeout ?? .zero }

    /// The most days a report in a zone without daily rows may span: it is computed from the 15-minute rows, and
    /// three years of them for 20 spaces took about 0.6 s here, well within the default statement timeout.
    public static let maxQuarterHourRangeDays = 1_096

    /// Refuses a range in a zone without daily rows that spans more than `maxQuarterHourRangeDays` days with data.
    private func checkQuarterHourRange(_ query: UsageQuery) async throws {
        guard let days = try await daysWithData(query), days > Self.maxQuarterHourRangeDays else { return }
        throw QueryError(
            "from..to spans \(days) days of data in \(query.zone), a zone without "
                + "daily rows (not in REPORT_TIMEZONES), where a report may span \(Self.maxQuarterHourRangeDays) days "
                + "at most: narrow from and to, or ask in a zone of REPORT_TIMEZONES")
    }

    /// The days from..to spans in `query.zone` once cut to the first and last days with data, as the queries of
    /// 15-minute rows cut it; nil without data.
    private func daysWithData(_ query: UsageQuery) async throws -> Int? {
        let bounds = try await pool.withConnection {
            try await $0.query(
                """
                SELECT ((min(bucket_start) AT TIME ZONE $1::text)::date)::text,
                       ((max(bucket_start) AT TIME ZONE $1::text)::date)::text
                FROM visits_quarter_hour
                """, [query.zone])
        }[0]
        guard let dataFirst = bounds[0].flatMap({ LocalDate($0) }), let dataLast = bounds[1].flatMap({ LocalDate($0) })
        else { return nil }
        return min(query.to ?? dataLast, dataLast).dayNumber - max(query.from ?? dataFirst, dataFirst).dayNumber + 1
    }

    /// Visits per local day, ascending; days without visits are left out.
    public func dailyUsage(_ query: UsageQuery) async throws -> [(day: String, visits: Int)] {
        let sql: String
        if try await readyZones.contains(query.zone, pool: pool) {
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
        let rows = try await pool.withConnection { try await $0.query(sql, query.parameters) }
        let days = try rows.rows.map { (day: try $0.string(0), visits: try $0.int(1)) }
        return query.fillsZeros ? Self.zeroFilled(days, from: query.from, to: query.to) : days
    }

    /// Distinct members per local day of any zone, ascending (days without visits left out), and distinct members
    /// over the whole range: a member who came on several days, or to several spaces, counts once in the total.
    /// Counted from the members' 15-minute rows between the range's local midnights, and bounded as the reports
    /// of 15-minute rows are.
    public func uniqueVisitors(_ query: UsageQuery) async throws -> (days: [(day: String, visits: Int)], total: Int) {
        if let days = try await daysWithData(query), days > Self.maxQuarterHourRangeDays {
            throw QueryError(
                "from..to spans \(days) days of data, and unique_visitors may span "
                    + "\(Self.maxQuarterHourRangeDays) days at most: narrow from and to")
        }
        // Each member's row falls in the local day whose midnight is the last one before it (the binary search of
        // daily_usage); the range's total, with a NULL day, is sorted last and is there even without rows.
        let rows = try await pool.withConnection {
            try await $0.query(
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
        }
        let days = try rows.rows.dropLast().map { (day: try $0.string(0), visits: try $0.int(1)) }
        let total = try rows[rows.count - 1].int(1)
        return (query.fillsZeros ? Self.zeroFilled(days, from: query.from, to: query.to) : days, total)
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

    /// `days` with every day from `from` (else the first of `days`) to `to` (else the last), 0 where absent.
    static func zeroFilled(_ days: [(day: String, visits: Int)], from: LocalDate?, to: LocalDate?)
        -> [(day: String, visits: Int)]
    {
        guard let first = from ?? days.first.flatMap({ LocalDate($0.day) }),
            let last = to ?? days.last.flatMap({ LocalDate($0.day) }), first <= last
        else { return days }
        let visits = Dictionary(days.map { ($0.day, $0.visits) }, uniquingKeysWith: +)
        return (first.dayNumber...last.dayNumber).map { number in
            let day = LocalDate(dayNumber: number).description
            return (day, visits[day] ?? 0)
        }
    }

    /// Visits per ISO weekday (1 is Monday) and local hour over the range: the busy hours' heat map. Cells without
    /// visits are left out.
    public func weekdayHours(_ query: UsageQuery) async throws -> [Int: [Int: Int]] {
        var cells: [Int: [Int: Int]] = [:]
        if try await readyZones.contains(query.zone, pool: pool) {
            let rows = try await pool.withConnection { try await $0.query(Self.localWeekdayHoursSQL, query.parameters) }
            for row in rows.rows {
                let weekday = try row.int(0)
                for hour in HourColumns.names.indices where row[hour + 1] != nil {
                    cells[weekday, default: [:]][hour] = try row.int(hour + 1)
                }
            }
        } else {
            try await checkQuarterHourRange(query)
            let rows = try await pool.withConnection {
                try await $0.query(Self.quarterHourWeekdaysSQL, query.parameters)
            }
            for row in rows.rows { cells[try row.int(0), default: [:]][try row.int(1)] = try row.int(2) }
        }
        return cells
    }

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

    /// Visits per local hour of the day (0 to 23) over the range; hours without visits are left out.
    public func hourlyUsage(_ query: UsageQuery) async throws -> [Int: Int] {
        var hours: [Int: Int] = [:]
        if try await readyZones.contains(query.zone, pool: pool) {
            let row = try await pool.withConnection { try await $0.query(Self.localHoursSQL, query.parameters) }[0]
            for hour in HourColumns.names.indices where row[hour] != nil {
                hours[hour] = try row.int(hour)
            }
        } else {
            try await checkQuarterHourRange(query)
            let rows = try await pool.withConnection { try await $0.query(Self.quarterHoursSQL, query.parameters) }
            for row in rows.rows { hours[try row.int(0)] = try row.int(1) }
        }
        return hours
    }

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

    /// One user's line of `user_visits`.
    public struct UserVisits: Sendable, Equatable {
        public var userID: Int
        public var visits: Int
        public var joinedAt: Timestamp?
    }

    private static let userVisitsSQL = """
        SELECT user_id, visits, joined_at FROM user_activity
        WHERE visits > 0 AND user_id > $1 ORDER BY user_id
        """

    /// A page of users with at least one visit, by ascending id after `query.after`.
    public func userVisits(after: Int32, limit: Int) async throws -> [UserVisits] {
        let rows = try await pool.withConnection {
            try await $0.query(Self.userVisitsSQL + " LIMIT $2", [after, limit])
        }
        return try rows.rows.map(Self.userVisits)
    }

    /// Every user with at least one visit after `after`, handed to `body` a page at a time, so that any number of
    /// users takes the memory of one page. Each page is read on a connection taken from the pool and returned
    /// before `body` runs (the next page starts after the last id of this one), so a client that reads slowly, or
    /// not at all, holds no database connection. Pages are not one snapshot: a fold that commits between two pages
    /// shows in the later one.
    public func streamUserVisits(after: Int32, pageSize: Int = 1_000, _ body: ([UserVisits]) async throws -> Void)
        async throws
    {
        var last = after
        while true {
            let page = try await userVisits(after: last, limit: pageSize)
            guard let lastUser = page.last else { return }
            try await body(page)
            guard page.count == pageSize else { return }
            last = Int32(lastUser.userID)
        }
    }

    /// The `limit` members with the most visits, all time and all spaces, most first (ties by ascending id).
    public func topMembers(limit: Int) async throws -> [UserVisits] {
        let rows = try await pool.withConnection {
            try await $0.query(
                """
                SELECT user_id, visits, joined_at FROM user_activity
                WHERE visits > 0 ORDER BY visits DESC, user_id LIMIT $1
                """, [limit])
        }
        return try rows.rows.map(Self.userVisits)
    }

    /// The spaces with visits, ascending, from the local-day rows (every folded zone has a row for each).
    public func spaces() async throws -> [String] {
        let rows = try await pool.withConnection {
            try await $0.query("SELECT DISTINCT space_id FROM visits_local_day ORDER BY 1")
        }
        return try rows.rows.map { try $0.string(0) }
    }

    private static func userVisits(_ row: PostgresRow) throws -> UserVisits {
        UserVisits(userID: try row.int(0), visits: try row.int(1), joinedAt: try row.optionalTimestamp(2))
    }

    /// The figures of `summary`.
    public struct Summary: Sendable, Equatable {
        public var checkins: Int
        public var users: Int
        public var firstCheckin: Timestamp?
        public var lastCheckin: Timestamp?
        public var lastFolded: Timestamp?
    }

    public func summary() async throws -> Summary {
        let rows = try await pool.withConnection {
            try await $0.query(
                """
                SELECT coalesce(sum(checkins), 0)::bigint, coalesce(sum(users), 0)::bigint,
                       min(first_checkin_at), max(last_checkin_at), max(last_folded_at)
                FROM fold_totals
                """)
        }
        let row = rows[0]
        return Summary(
            checkins: try row.int(0), users: try row.int(1), firstCheckin: try row.optionalTimestamp(2),
            lastCheckin: try row.optionalTimestamp(3), lastFolded: try row.optionalTimestamp(4))
    }

    /// The rollups' version and the commit time of the newest fold.
    public func freshness() async throws -> Freshness {
        try await pool.withConnection { try await Freshness.read(on: $0) }
    }

    /// Whether the database answers `SELECT 1` within `deadline`. A probe that has not answered by then is left to
    /// end by itself (its connection's timeouts bound it), and the answer is no at the deadline.
    public func databaseAnswers(within deadline: Duration) async -> Bool {
        let probePool = self.probePool
        return await withCheckedContinuation { continuation in
            let answer = FirstAnswer(continuation)
            Task {
                let answered = try? await probePool.withConnection { try await $0.query("SELECT 1") }
                answer.give(answered != nil)
            }
            Task {
                try? await Task.sleep(for: deadline)
                answer.give(false)
            }
        }
    }
}

/// A continuation resumed by the first of several racers; the others' answers are dropped.
private final class FirstAnswer: Sendable {
    private let continuation: Mutex<CheckedContinuation<Bool, Never>?>

    init(_ continuation: CheckedContinuation<Bool, Never>) {
        self.continuation = Mutex(continuation)
    }

    func give(_ answer: Bool) {
        continuation.withLock { $0.take() }?.resume(returning: answer)
    }
}

extension UsageQuery {
    var parameters: [(any PostgresEncodable)?] {
        [zone, from?.description, to?.description, space]
    }
}

/// The zones whose daily rows are filled, read from `report_zones` at most every ten seconds: zones change only
/// when `consumer migrate` runs.
final class ReadyZones: Sendable {
    private struct Cache {
        var zones: Set<String> = []
        var readAt: ContinuousClock.Instant?
    }

    private let cache = Mutex(Cache())
    private static let lifetime = Duration.seconds(10)

    func contains(_ zone: String, pool: PostgresPool) async throws -> Bool {
        let now = ContinuousClock.now
        let cached: Set<String>? = cache.withLock { cache in
            guard let readAt = cache.readAt, now - readAt < Self.lifetime else { return nil }
            return cache.zones
        }
        if let cached { return cached.contains(zone) }
        let rows = try await pool.withConnection { try await $0.query("SELECT zone FROM report_zones WHERE ready") }
        let zones = Set(try rows.rows.map { try $0.string(0) })
        cache.withLock { $0 = Cache(zones: zones, readAt: now) }
        return zones.contains(zone)
    }
}
