import Basics
import Hummingbird
import Logging
import NIOCore
import Pipeline

/// The limits that keep one caller, or one kind of report, from starving the others.
public struct ReportLimits: Sendable {
    /// `REPORT_COSTLY_CONCURRENCY`: costly reports computed at once at most (a range in a zone without daily rows,
    /// `unique_visitors`, `top_members`, `weekday_hours`, `filters`, `user_visits` without `limit`); smaller than the
    /// pool, so that cheap reports and the probes never wait behind them.
    public var costlyConcurrency: Int
    /// How long a costly report waits for its turn before it answers 503 (`DB_POOL_TIMEOUT_MS`).
    public var costlyPatience: Duration
    /// `API_CLIENT_CONCURRENCY`: requests of one bearer token, or one client address without tokens, at once.
    public var clientConcurrency: Int
    /// `REPORT_CACHE_MB`: the response cache's budget, in bytes.
    public var cacheBytes: Int
    /// `REPORT_MAX_STALE_MS`: how long a slow report's previous answer may be served while the next is computed.
    public var maxStaleness: Duration

    public init(
        costlyConcurrency: Int = 2, costlyPatience: Duration = .seconds(1), clientConcurrency: Int = 16,
        cacheBytes: Int = 32 << 20, maxStaleness: Duration = .seconds(2)
    ) {
        self.costlyConcurrency = costlyConcurrency
        self.costlyPatience = costlyPatience
        self.clientConcurrency = clientConcurrency
        self.cacheBytes = cacheBytes
        self.maxStaleness = maxStaleness
    }
}

/// A report answer as kept by the cache: the bytes sent, and the version of the rollups they show.
struct CachedReport: Sendable {
    var body: ByteBuffer
    var freshness: Freshness
}

/// A costly report found every turn taken: answered 503 with `Retry-After`, naming the limit.
struct CostlyReportsBusy: Error {
    var limit: Int
    var patience: Duration

    var message: String {
        "costly reports run \(limit) at a time (REPORT_COSTLY_CONCURRENCY) and none ended within "
            + "\(patience.milliseconds) ms; try again shortly"
    }
}

/// The report routes over a `ReportRepository`: each parses its query (a bad one answers 400 before the database is asked),
/// answers from the cache when it can, and otherwise computes its rows on one connection (costly ones within their
/// limit), renders them as JSON or CSV, and caches the bytes; a computation whose every asker's client went away is
/// cancelled, in PostgreSQL too.
struct ReportController: Sendable {
    let store: any ReportRepository
    let zones: ReportZones
    let cache: ResponseCache<CachedReport>
    let costly: ConcurrencyLimit
    let costlyPatience: Duration
    let disconnects: ClientDisconnects
    let logger: Logger

    func addRoutes(to router: Router<ReportRequestContext>) {
        let zones = self.zones
        router.get("api/reports/daily_usage") { request, context -> Response in
            try await report("daily_usage", request, context, parse: usage, isCostly: quarterHourly) {
                DailyUsage(days: try await $0.dailyUsage($1))
            }
        }
        router.get("api/reports/hourly_usage") { request, context -> Response in
            try await report("hourly_usage", request, context, parse: usage, isCostly: quarterHourly) {
                HourlyUsage(hours: try await $0.hourlyUsage($1))
            }
        }
        router.get("api/reports/weekday_hours") { request, context -> Response in
            try await report("weekday_hours", request, context, parse: usage, isCostly: { _ in true }) {
                WeekdayHours(cells: try await $0.weekdayHours($1))
            }
        }
        router.get("api/reports/unique_visitors") { request, context -> Response in
            try await report("unique_visitors", request, context, parse: usage, isCostly: { _ in true }) {
                let (days, total) = try await $0.uniqueVisitors($1)
                return UniqueVisitors(days: days, total: total)
            }
        }
        router.get("api/reports/top_members") { request, context -> Response in
            try await report(
                "top_members", request, context,
                parse: { try TopMembersQuery(parameters: $0, defaultZone: zones.defaultZone) }, isCostly: { _ in true }
            ) { TopMembers(members: try await $0.topMembers($1)) }
        }
        router.get("api/reports/summary") { request, context -> Response in
            try await report("summary", request, context, parse: NoParameters.init, isCostly: { _ in false }) {
                reader, _ in try await reader.summary()
            }
        }
        router.get("api/reports/filters") { request, context -> Response in
            // No format either: its answer is JSON only.
            let query = try NoParameters(request.queryPairs)
            return try await cachedOrComputed("filters", .json, query, request, context, isCostly: true) { reader, _ in
                Filters(defaultZone: zones.defaultZone, zones: zones.folded, spaces: try await reader.spaces())
            }
        }
        router.get("api/reports/user_visits") { request, context -> Response in
            try await userVisits(request, context)
        }
    }

    private func usage(_ parameters: [(String, String)]) throws -> UsageQuery {
        try UsageQuery(parameters: parameters, defaultZone: zones.defaultZone)
    }

    /// Whether a usage report reads 15-minute rows: its zone has no daily rows.
    private func quarterHourly(_ query: UsageQuery) async throws -> Bool {
        try await !store.isFolded(query.zone)
    }

    /// A cached report: its format and query parsed from `request`, then `answer`.
    private func report<Query: ReportQuery>(
        _ name: String, _ request: Request, _ context: ReportRequestContext,
        parse: ([(String, String)]) throws -> Query, isCostly: (Query) async throws -> Bool,
        read: @escaping @Sendable (any ReportQueries, Query) async throws -> any ReportBody
    ) async throws -> Response {
        let (format, parameters) = try ReportFormat.of(request.queryPairs, accept: request.headers[.accept])
        let query = try parse(parameters)
        let key = "\(name) \(format.rawValue) \(query.cacheKey)"
        if let cached = cache.cachedAnswer(for: key) { return response(cached, format, to: request) }
        return try await cachedOrComputed(
            name, format, query, request, context, isCostly: try await isCostly(query), read)
    }

    /// The answer of report `name` for `query` in `format`, from the cache or computed.
    private func cachedOrComputed<Query: ReportQuery>(
        _ name: String, _ format: ReportFormat, _ query: Query, _ request: Request, _ context: ReportRequestContext,
        isCostly: Bool, _ read: @escaping @Sendable (any ReportQueries, Query) async throws -> any ReportBody
    ) async throws -> Response {
        let (store, costly, patience) = (self.store, self.costly, costlyPatience)
        let cached = try await disconnects.whileConnected(context.channel) { [cache] in
            try await cache.answer(for: "\(name) \(format.rawValue) \(query.cacheKey)", servingStale: isCostly) {
                let turn = isCostly ? try await Self.turn(of: costly, waitingUpTo: patience) : nil
                defer { withExtendedLifetime(turn) {} }
                let (freshness, body) = try await store.read { try await read($0, query) }
                return CachedReport(body: ByteBuffer(string: body.rendered(as: format)), freshness: freshness)
            }
        }
        return response(cached, format, to: request)
    }

    private static func turn(of limit: ConcurrencyLimit, waitingUpTo patience: Duration) async throws
        -> ConcurrencyLimit.Turn
    {
        guard let turn = await limit.turn(waitingUpTo: patience) else {
            try Task.checkCancellation()
            throw CostlyReportsBusy(limit: limit.limit, patience: patience)
        }
        return turn
    }

    private func response(_ cached: CachedReport, _ format: ReportFormat, to request: Request) -> Response {
        cached.freshness.response(to: request, format: format, answer(cached.body, format))
    }

    /// `user_visits`: a page (`limit`), or every user streamed, a costly report that holds its turn until the last
    /// page is written.
    private func userVisits(_ request: Request, _ context: ReportRequestContext) async throws -> Response {
        let (format, parameters) = try ReportFormat.of(request.queryPairs, accept: request.headers[.accept])
        let query = try UserVisitsQuery(parameters: parameters)
        let store = self.store
        if let limit = query.limit {
            let (freshness, users) = try await disconnects.whileConnected(context.channel) {
                try await store.read { try await $0.userVisits(after: query.after, limit: limit) }
            }
            return freshness.response(
                to: request, format: format,
                answer(ByteBuffer(string: UserVisitsPage(users: users).rendered(as: format)), format))
        }
        let (freshness, _) = try await store.read { _ in () }
        if freshness.isHeld(by: request, format: format) {
            return freshness.response(to: request, format: format, Response(status: .ok))
        }
        let turn = try await Self.turn(of: costly, waitingUpTo: costlyPatience)
        return freshness.response(
            to: request, format: format, streamedUserVisits(after: query.after, format: format, holding: turn))
    }

    /// Every user, streamed a page at a time, as JSON or CSV. Once the first bytes are sent the status is 200: a
    /// failure after that cuts the body short (the client sees invalid JSON, or a CSV without its last rows) and is
    /// logged.
    private func streamedUserVisits(after: Int32, format: ReportFormat, holding turn: ConcurrencyLimit.Turn)
        -> Response
    {
        let (store, logger) = (self.store, self.logger)
        return Response(
            status: .ok, headers: [.contentType: contentType(format)],
            body: ResponseBody { writer in
                defer { withExtendedLifetime(turn) {} }
                var first = true
                do {
                    if format == .csv { try await writer.write(ByteBuffer(string: ReportCSV.userVisitsHeader)) }
                    try await store.streamUserVisits(after: after, pageSize: 1_000) { page in
                        let text =
                            format == .csv
                            ? ReportCSV.userVisitsRows(page) : (first ? "{" : ",") + ReportJSON.userVisitsMembers(page)
                        try await writer.write(ByteBuffer(string: text))
                        first = false
                    }
                } catch {
                    logger.error(
                        "Streaming user_visits failed", metadata: [LogKey.error: "\(String(reflecting: error))"])
                    throw error
                }
                if format == .json { try await writer.write(ByteBuffer(string: first ? "{}" : "}")) }
                try await writer.finish(nil)
            })
    }
}
