import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import Synchronization
import Testing

/// Reads at a bounded cost, tried as an attacker and a busy analyst would: answers sized by the data whatever the
/// range asked, costly reports within their limit, each client within its own, and a query whose client left
/// cancelled in PostgreSQL. Against a live server and the real PostgreSQL.
@Suite(.serialized)
struct ReportAPIFairnessTests {
    /// A live report API over `schema` with `limits`, served on a port of its own for `body`, its database
    /// connections named `api` in `pg_stat_activity`.
    static func withAPI(
        schema: String, limits: ReportLimits, poolSize: Int = 4, cacheLifetime: Duration = .seconds(1),
        statementTimeout: Duration = .seconds(5), _ body: @Sendable (_ port: Int, _ api: String) async throws -> Void
    ) async throws {
        var database = try TestServers.readerDatabase(schema: schema)
        database.applicationName = TestServers.uniqueName("api")
        var settings = ReportAPISettings(
            database: database, zones: TestServers.utcZones, poolSize: poolSize, statementTimeout: statementTimeout,
            poolTimeout: limits.costlyPatience, cacheLifetime: cacheLifetime, limits: limits)
        settings.bindAddress = "127.0.0.1"
        let application = ReportAPIApp.buildApplication(
            settings: settings, registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
        let api = database.applicationName
        try await application.test(.live) { client in try await body(try #require(client.port), api) }
    }

    /// The statements of connections named `api` that wait for a lock, seen as the API's role (PostgreSQL shows
    /// what other roles' connections do to superusers only).
    static func lockWaits(of api: String) async throws -> Int {
        let observer = try await PostgresConnection.connect(
            TestServers.readerDatabase(schema: "public"), logger: TestServers.logger)
        return try await observer.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [api]
        )[0].int(0)
    }

    /// Waits until `count` statements of connections named `api` wait for a lock.
    static func waitForLockWaits(of api: String, count: Int) async throws {
        for _ in 0..<500 {
            if try await lockWaits(of: api) >= count { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        let observer = try await PostgresConnection.connect(
            TestServers.readerDatabase(schema: "public"), logger: TestServers.logger)
        let activity = try await observer.query(
            "SELECT application_name, coalesce(wait_event_type, '-'), left(query, 60) FROM pg_stat_activity")
        let seen = activity.rows.map { "\($0[0] ?? "") \($0[1] ?? "") \($0[2] ?? "")" }.joined(separator: "; ")
        Issue.record("\(count) statements of \(api) did not come to wait for the lock: \(seen)")
    }

    /// The status line and body of `GET path`.
    static func get(_ port: Int, _ path: String) async throws -> (status: String, body: String) {
        let answer = try await HTTPGet.text(port: port, path: path)
        let parts = answer.components(separatedBy: "\r\n\r\n")
        return (parts[0].components(separatedBy: "\r\n")[0], parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// A zero-filled range open on either side, or reaching to the year 9999, lists the days within the data: two
    /// check-ins three days apart give four days, in JSON and CSV, for daily_usage and unique_visitors alike.
    @Test func aZeroFilledRangeReachingFarListsOnlyTheDaysWithinTheData() async throws {
        try await ReportAPIFixture.withFolded(
            [Timestamp(year: 2024, month: 5, day: 1, hour: 9), Timestamp(year: 2024, month: 5, day: 4, hour: 9)].map {
                Event(id: UUID(), kind: .checkin, userID: 7, occurredAt: $0, spaceID: "hq")
            }
        ) { harness in
            let router = try ReportAPIFixture.router(schema: harness.schema, cacheLifetime: .seconds(60))
            let days = #"{"2024-05-01":1,"2024-05-02":0,"2024-05-03":0,"2024-05-04":1}"#
            let csv = "day,visits\r\n2024-05-01,1\r\n2024-05-02,0\r\n2024-05-03,0\r\n2024-05-04,1\r\n"
            for range in ["to=9999-12-31", "from=0001-01-01", "from=0001-01-01&to=0010-12-31", "", "from=2024-05-01"] {
                for zone in ["UTC", "Asia/Kathmandu"] {
                    let query = "tz=\(zone)&fill=zero" + (range.isEmpty ? "" : "&" + range)
                    let expectedDays = range.hasPrefix("from=0001-01-01&to=0010") ? "{}" : days
                    #expect(
                        try await ReportAPIFixture.get(router, "/api/reports/daily_usage?\(query)") == (
                            .ok, expectedDays
                        ),
                        "\(query)")
                    #expect(
                        try await ReportAPIFixture.get(router, "/api/reports/daily_usage?\(query)&format=csv")
                            == (.ok, expectedDays == "{}" ? "day,visits\r\n" : csv), "\(query)")
                    let unique = try await ReportAPIFixture.get(router, "/api/reports/unique_visitors?\(query)")
                    #expect(
                        unique
                            == (
                                .ok, expectedDays == "{}" ? #"{"days":{},"total":0}"# : #"{"days":\#(days),"total":1}"#
                            ),
                        "\(query)")
                }
            }
        }
    }

    /// Padding a URI with parameters in another order, or naming the default zone, makes no new cache entry; the
    /// cache holds no more bytes than its budget, and says how many it holds.
    @Test func theCacheIsKeyedByTheParsedQueryAndBoundedInBytes() async throws {
        try await ReportAPIFixture.withFolded(workload(events: 2_000, users: 80, seed: 41)) { harness in
            let limits = ReportLimits(cacheBytes: 40_000)
            try await Self.withAPI(schema: harness.schema, limits: limits, cacheLifetime: .seconds(60)) { port, _ in
                func cacheBytes() async throws -> Int {
                    let metrics = try await Self.get(port, "/metrics").body
                    let line = metrics.split(separator: "\n").first { $0.hasPrefix("coworking_api_cache_bytes ") }
                    return try #require(line.flatMap { Double($0.split(separator: " ")[1]) }.map { Int($0) })
                }
                _ = try await Self.get(port, "/api/reports/daily_usage?tz=UTC&from=2023-03-01&to=2023-11-30")
                let one = try await cacheBytes()
                #expect(one > 0)
                for spelling in [
                    "/api/reports/daily_usage?to=2023-11-30&from=2023-03-01",
                    "//api/reports/daily_usage?from=2023-03-01&to=2023-11-30&tz=UTC",
                    "/api/reports/daily_usage?from=2023-03-01&tz=UTC&to=2023-11-30",
                ] {
                    #expect(try await Self.get(port, spelling).status == "HTTP/1.1 200 OK")
                }
                #expect(try await cacheBytes() == one, "the same query, spelled otherwise, is one entry")
                // Hundreds of distinct queries: the cache stays within its budget.
                for day in 1...200 {
                    let from = LocalDate(dayNumber: LocalDate("2023-01-01")!.dayNumber + day)
                    #expect(
                        try await Self.get(port, "/api/reports/daily_usage?tz=UTC&from=\(from)").status
                            == "HTTP/1.1 200 OK")
                    #expect(try await cacheBytes() <= limits.cacheBytes)
                }
            }
        }
    }

    /// While costly reports hold every turn of their limit (a lock keeps them waiting), another costly report waits
    /// its patience and answers 503 naming the limit; a cheap report and the probes answer at once.
    @Test func costlyReportsPastTheirLimitAnswer503WhileCheapOnesAnswer() async throws {
        try await ReportAPIFixture.withFolded(workload(events: 500, users: 40, seed: 43)) { harness in
            try await harness.compactMembers()
            let limits = ReportLimits(costlyConcurrency: 2, costlyPatience: .milliseconds(300))
            let locker = try await harness.database()
            try await locker.execute("BEGIN; LOCK TABLE member_days IN ACCESS EXCLUSIVE MODE")
            try await Self.withAPI(schema: harness.schema, limits: limits, cacheLifetime: .zero) { port, api in
                let held = try (0..<2).map { _ in
                    try StalledClient(port: port, path: "/api/reports/unique_visitors?tz=UTC", closing: true)
                }
                try await Self.waitForLockWaits(of: api, count: 2)
                let asked = ContinuousClock.now
                let refused = try await HTTPGet.text(
                    port: port, path: "/api/reports/top_members?tz=UTC&from=2023-01-01")
                #expect(ContinuousClock.now - asked >= .milliseconds(300))
                #expect(refused.hasPrefix("HTTP/1.1 503 Service Unavailable"))
                #expect(refused.contains("\r\nRetry-After: 1\r\n"))
                #expect(
                    refused.hasSuffix(
                        #"{"error":"costly reports run 2 at a time (REPORT_COSTLY_CONCURRENCY) and none ended within "#
                            + #"300 ms; try again shortly"}"#))
                // Cheap reports neither queue behind the costly ones (they would get the 503 above) nor wait for the
                // lock, which is held until the rollback below.
                for cheap in ["/api/reports/daily_usage?tz=UTC", "/api/reports/summary", "/readiness_check"] {
                    let started = ContinuousClock.now
                    #expect(try await Self.get(port, cheap).status == "HTTP/1.1 200 OK", "\(cheap)")
                    #expect(ContinuousClock.now - started < .seconds(5), "\(cheap) waited")
                }
                try await locker.execute("ROLLBACK")
                for client in held { #expect(try await client.readToEnd().hasPrefix("HTTP/1.1 200 OK")) }
            }
        }
    }

    /// One client (here one address, no tokens) with more requests in flight than its limit gets 429 for the
    /// extra one; the probes are not limited, and another client is not affected.
    @Test func aClientPastItsConcurrencyGets429() async throws {
        try await Schemas.withMigrated(users: 3) { schema in
            let locker = try await Schemas.lockFoldTotals(schema)
            try await Self.withAPI(
                schema: schema, limits: ReportLimits(clientConcurrency: 2), cacheLifetime: .zero
            ) { port, api in
                let held = try (0..<2).map { _ in
                    try StalledClient(port: port, path: "/api/reports/summary", closing: true)
                }
                try await Self.waitForLockWaits(of: api, count: 2)
                let refused = try await HTTPGet.text(port: port, path: "/api/reports/daily_usage")
                #expect(refused.hasPrefix("HTTP/1.1 429 Too Many Requests"))
                #expect(refused.contains("\r\nRetry-After: 1\r\n"))
                #expect(
                    refused.hasSuffix(
                        #"{"error":"more than 2 requests of this client at once (API_CLIENT_CONCURRENCY); wait for an "#
                            + #"answer"}"#))
                #expect(try await Self.get(port, "/readiness_check").status == "HTTP/1.1 200 OK")
                #expect(try await Self.get(port, "/health_check").status == "HTTP/1.1 200 OK")
                try await locker.execute("ROLLBACK")
                for client in held { #expect(try await client.readToEnd().hasPrefix("HTTP/1.1 200 OK")) }
                #expect(try await Self.get(port, "/api/reports/daily_usage").status == "HTTP/1.1 200 OK")
            }
        }
    }

    /// Eight clients loop on costly reports with ever-changing ranges, in a zone without daily rows and in one with
    /// them, while a ninth asks the probes and daily_usage of a zone with daily rows, cached and with a new range
    /// each time: every answer of the ninth is 200, throughout, and none waits seconds (a starved one would wait out
    /// the pool's or the costly reports' timeout for a 503).
    @Test func eightClientsOnCostlyReportsStarveNoneOfTheCheapOnes() async throws {
        try await ReportAPIFixture.withFolded(workload(events: 30_000, users: 2_000, seed: 47)) { harness in
            try await harness.compactMembers()
            let limits = ReportLimits(costlyConcurrency: 2, costlyPatience: .milliseconds(500), clientConcurrency: 64)
            try await Self.withAPI(schema: harness.schema, limits: limits) { port, _ in
                final class Shared: Sendable {
                    let stop = Atomic<Bool>(false)
                    let costlyAnswers = Atomic<Int>(0)
                }
                let shared = Shared()
                var slowest: (took: Duration, path: String) = (.zero, "")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for client in 0..<8 {
                        group.addTask {
                            var round = 0
                            while !shared.stop.load(ordering: .relaxed) {
                                round += 1
                                let report = ["unique_visitors", "top_members", "weekday_hours", "daily_usage"][
                                    round % 4]
                                let zone = client % 2 == 0 ? "Asia/Kathmandu" : "UTC"
                                let from = LocalDate(
                                    dayNumber: LocalDate("2023-01-01")!.dayNumber + (client * 37 + round) % 180)
                                _ = try await HTTPGet.text(
                                    port: port, path: "/api/reports/\(report)?tz=\(zone)&from=\(from)")
                                shared.costlyAnswers.add(1, ordering: .relaxed)
                            }
                        }
                    }
                    let deadline = ContinuousClock.now + .seconds(6)
                    var round = 0
                    while ContinuousClock.now < deadline {
                        round += 1
                        let from = LocalDate(dayNumber: LocalDate("2023-01-01")!.dayNumber + round % 300)
                        for path in [
                            "/health_check", "/readiness_check", "/api/reports/daily_usage?tz=UTC&from=2023-03-01",
                            "/api/reports/daily_usage?tz=UTC&from=\(from)",
                        ] {
                            let started = ContinuousClock.now
                            let status = try await Self.get(port, path).status
                            let took = ContinuousClock.now - started
                            #expect(status == "HTTP/1.1 200 OK", "\(path)")
                            if took > slowest.took { slowest = (took, path) }
                        }
                    }
                    shared.stop.store(true, ordering: .relaxed)
                    try await group.waitForAll()
                }
                #expect(slowest.took < .seconds(3), "\(slowest.path) took \(slowest.took)")
                #expect(shared.costlyAnswers.load(ordering: .relaxed) > 8, "the costly clients were answered too")
            }
        }
    }

    /// A client that asks for a costly report and goes away while its query waits: the query is cancelled in
    /// PostgreSQL within seconds, rather than left to run to the 60 s statement timeout for nobody.
    @Test func aQueryWhoseClientLeftIsCancelledInPostgreSQL() async throws {
        try await ReportAPIFixture.withFolded(workload(events: 500, users: 40, seed: 53)) { harness in
            let locker = try await harness.database()
            try await locker.execute("BEGIN; LOCK TABLE member_visits IN ACCESS EXCLUSIVE MODE")
            try await Self.withAPI(
                schema: harness.schema, limits: ReportLimits(), cacheLifetime: .seconds(1),
                statementTimeout: .seconds(60)
            ) { port, api in
                var client: StalledClient? = try StalledClient(
                    port: port, path: "/api/reports/unique_visitors?tz=Asia/Kathmandu")
                try await Self.waitForLockWaits(of: api, count: 1)
                #expect(try await Self.lockWaits(of: api) == 1, "the report's query waits for the lock")
                withExtendedLifetime(client) {}
                client = nil
                let left = ContinuousClock.now
                while try await Self.lockWaits(of: api) > 0, ContinuousClock.now - left < .seconds(5) {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(try await Self.lockWaits(of: api) == 0, "not cancelled within 5 s")
                #expect(try await Self.get(port, "/health_check").status == "HTTP/1.1 200 OK")
            }
            try await locker.execute("ROLLBACK")
        }
    }
}
