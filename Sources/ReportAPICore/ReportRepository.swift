import PostgresClient

/// Where the report routes read the rollups from: PostgreSQL (`PostgresReportRepository`), or memory
/// (`MemoryReportRepository`, for route tests and demos that need no server).
public protocol ReportRepository: Sendable {
    /// Reads the rollups' version, then runs `body` on the same view of the rollups: an answer never claims a version
    /// older than its numbers.
    func read<T: Sendable>(_ body: (any ReportQueries) async throws -> T) async throws -> (
        freshness: Freshness, value: T
    )

    /// Whether `zone` has daily rows (it is one of `REPORT_TIMEZONES` that `consumer migrate` filled): its reports
    /// are cheap.
    func isFolded(_ zone: String) async throws -> Bool

    /// Every user with at least one visit after `after`, handed to `body` a page at a time, so that any number of
    /// users takes the memory of one page; a client that reads slowly holds nothing between pages.
    func streamUserVisits(after: Int32, pageSize: Int, _ body: ([UserVisits]) async throws -> Void) async throws

    /// Whether the store answers within `deadline`: the readiness probe.
    func answers(within deadline: Duration) async -> Bool

    /// The longest a query may run, zero for none: named in the answer past it.
    var statementTimeout: Duration { get }
}

/// The reports, read on one view of the rollups (`ReportRepository.read(_:)`).
public protocol ReportQueries: Sendable {
    /// Visits per local day, ascending; days without visits left out, or listed as 0 with `fill=zero` within the days
    /// with data.
    func dailyUsage(_ query: UsageQuery) async throws -> [(day: String, visits: Int)]
    /// Visits per local hour of the day (0 to 23) over the range; hours without visits left out.
    func hourlyUsage(_ query: UsageQuery) async throws -> [Int: Int]
    /// Visits per ISO weekday (1 is Monday) and local hour; cells without visits left out.
    func weekdayHours(_ query: UsageQuery) async throws -> [Int: [Int: Int]]
    /// Distinct members per local day and over the range.
    func uniqueVisitors(_ query: UsageQuery) async throws -> (days: [(day: String, visits: Int)], total: Int)
    /// The members with the most visits over the range, most first, ties by ascending id.
    func topMembers(_ query: TopMembersQuery) async throws -> [UserVisits]
    /// A page of users with at least one visit, by ascending id after `after`.
    func userVisits(after: Int32, limit: Int) async throws -> [UserVisits]
    /// The spaces with visits, ascending.
    func spaces() async throws -> [String]
    func summary() async throws -> Summary
}
