import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import TestSupport
import Testing

/// The dashboard in a real browser: headless Chromium (Debian's), driven by Playwright for Python
/// (`Tests/Browser/dashboard.py`), on a live report API over known rollups, with bearer tokens required.
@Suite
struct DashboardBrowserTests {
    static let script = TestServers.repository.appendingPathComponent("Tests/Browser/dashboard.py")

    /// Where the screenshots go: the build's test output, beside the test logs.
    static let output = TestServers.repository.appendingPathComponent(".build/test-output")

    /// What the page showed, as `dashboard.py` prints it.
    struct Shown: Decodable {
        struct Query: Decodable {
            var tz: String
            var from: String?
            var to: String?
            var space: String
        }

        var query: Query
        var labels: [String]
        var data: [Int]
        /// The chart's unique visitors per day; nil when the chart has none (unique_visitors did not answer).
        var unique: [Int]?
        var heat: [String: [String: Int]]
        var members: [[String]]
        var summary: [String]
        var freshness: String
        var lastFolded: String
        var error: String?
        /// The line that says why unique visitors are missing, if they are.
        var uniqueError: String?
        var pageErrors: [String]
        /// What Tab reached, in order: ids, `csv:` and a report, or a role and what labels it.
        var keyboard: [String]
        /// axe-core's serious and critical violations, in each state and size the page was checked in.
        var axe: [Violation]

        struct Violation: Decodable, CustomStringConvertible {
            var state: String
            var id: String
            var impact: String
            /// The elements at fault, as CSS selectors.
            var targets: [[String]]
            var description: String { "\(id) (\(impact), \(state)): \(targets.prefix(5))" }
        }
    }

    /// `instant` (RFC 3339) as the page writes a time in `zone`: YYYY-MM-DD HH:MM:SS, then the zone's name.
    static func inZone(_ instant: String, _ zone: String, dateOnly: Bool = false) throws -> String {
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(parser.date(from: instant) ?? ISO8601DateFormatter().date(from: instant))
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: zone)
        formatter.dateFormat = dateOnly ? "yyyy-MM-dd" : "yyyy-MM-dd HH:mm:ss"
        return dateOnly ? formatter.string(from: date) : formatter.string(from: date) + " " + zone
    }

    @Test func thePageShowsExactlyWhatTheAPIAnswersForTheChosenZoneRangeAndSpace() async throws {
        let events = workload(events: 2_000, users: 80, seed: 31)
        try await ReportAPIFixture.withFolded(events) { harness in
            let tokens = try ReportAPIFixture.tokensFile(ReportAPIFixture.digest + "\n")
            defer { try? FileManager.default.removeItem(atPath: tokens) }
            var reader = try TestServers.readerDatabase(schema: harness.schema)
            reader.statementTimeout = .milliseconds(500)
            let pool = PostgresPool(configuration: reader, maxConnections: 4, logger: TestServers.logger)
            let router = ReportAPIApp.buildRouter(
                repository: PostgresReportRepository(pool: pool),
                zones: ReportZones(folded: ReportAPIFixture.zones, defaultZone: "UTC"),
                cacheLifetime: .seconds(1), tokens: try APITokens.fromFile(tokens),
                registry: PrometheusCollectorRegistry(),
                logger: TestServers.logger)
            try FileManager.default.createDirectory(at: Self.output, withIntermediateDirectories: true)
            let screenshot = Self.output.appendingPathComponent("dashboard.png")
            try? FileManager.default.removeItem(at: screenshot)

            try await Application(router: router).test(.live) { client in
                let port = try #require(client.port)
                let shown = try await Self.openPage(
                    port: port, token: "s3cret-token", zone: "Asia/Kolkata", range: "all", space: "hq",
                    screenshot: screenshot.path)
                #expect(shown.error == nil)
                #expect(shown.pageErrors.isEmpty, "the page ran without errors (its CSP included)")
                #expect(shown.axe.isEmpty, "\(shown.axe)")
                // Every control, link and scrollable region, from the keyboard.
                for reachable in [
                    "zone", "range", "space", "csv:daily_usage", "csv:unique_visitors", "csv:weekday_hours",
                    "csv:top_members", "region:heat-title", "region:members-title",
                ] {
                    #expect(shown.keyboard.contains(reachable), "\(reachable) in \(shown.keyboard)")
                }
                #expect(shown.query.tz == "Asia/Kolkata")
                #expect(shown.query.space == "hq")
                #expect(shown.query.from == nil && shown.query.to == nil, "all: no range")

                func answer(_ uri: String) async throws -> Data {
                    try await client.execute(
                        uri: uri, method: .get, headers: [.authorization: "Bearer s3cret-token"]
                    ) { Data(buffer: $0.body) }
                }
                // The chart: every day of the space's data in the zone, zero-filled, as daily_usage answers.
                let days = try JSONDecoder().decode(
                    [String: Int].self,
                    from: try await answer("/api/reports/daily_usage?tz=Asia/Kolkata&space=hq&fill=zero"))
                #expect(shown.labels == days.keys.sorted())
                #expect(shown.data == shown.labels.map { days[$0] ?? -1 })
                let expected = try ExpectedRollups(events: events, zones: ["Asia/Kolkata"])
                let visitsOfHQ = expected.daily.filter { $0.key.hasSuffix(" hq") }.values.reduce(0, +)
                #expect(shown.data.reduce(0, +) == visitsOfHQ)

                // The chart's line and the summary's figure: unique visitors per day and over the range, as
                // unique_visitors answers, and as the model counts them.
                struct UniqueVisitors: Decodable {
                    var days: [String: Int]
                    var total: Int
                }
                let unique = try JSONDecoder().decode(
                    UniqueVisitors.self,
                    from: try await answer("/api/reports/unique_visitors?tz=Asia/Kolkata&space=hq&fill=zero"))
                #expect(shown.unique == shown.labels.map { unique.days[$0] ?? -1 })
                let model = try ExpectedReports.expectedUniqueVisitors(
                    expected, zone: "Asia/Kolkata", from: "0000-01-01", to: "9999-12-31", space: "hq")
                #expect(unique.days.filter { $0.value > 0 } == model.days)
                #expect(unique.total == model.total)
                #expect(shown.summary.dropFirst(2).first?.replacingOccurrences(of: ",", with: "") == "\(model.total)")

                // The heat map's 7 × 24 cells, as weekday_hours answers.
                let cells = try JSONDecoder().decode(
                    [String: [String: Int]].self,
                    from: try await answer("/api/reports/weekday_hours?tz=Asia/Kolkata&space=hq"))
                #expect(shown.heat == cells)
                #expect(shown.heat.values.flatMap(\.values).reduce(0, +) == visitsOfHQ)

                // The members' table, as top_members answers for the same zone, range and space, and as the model ranks
                // the members of the space.
                struct Member: Decodable {
                    var user_id: Int
                    var visits: Int
                    var joined_at: String?
                }
                let members = try JSONDecoder().decode(
                    [Member].self, from: try await answer("/api/reports/top_members?tz=Asia/Kolkata&space=hq&limit=10"))
                #expect(
                    members.map { [$0.user_id, $0.visits] }
                        == ExpectedReports.expectedTopMembers(expected, zone: "Asia/Kolkata", space: "hq", limit: 10))
                // Join days in the zone shown; "not recorded" for members whose user_joined never arrived.
                let rows = try members.map {
                    [
                        "\($0.user_id)", "\($0.visits)",
                        try $0.joined_at.map { try Self.inZone($0, "Asia/Kolkata", dateOnly: true) } ?? "not recorded",
                    ]
                }
                #expect(shown.members == rows)
                #expect(members.count == 10)

                let summary = try #require(
                    try JSONSerialization.jsonObject(with: try await answer("/api/reports/summary")) as? [String: Any])
                #expect(shown.lastFolded == summary["last_folded_at"] as? String)
                #expect(shown.summary.first?.replacingOccurrences(of: ",", with: "") == "\(expected.checkins)")
                // Times in the zone the page shows, with its name.
                let first = try #require(summary["first_checkin_at"] as? String)
                let last = try #require(summary["last_checkin_at"] as? String)
                #expect(
                    Array(shown.summary.suffix(2)) == [
                        try Self.inZone(first, "Asia/Kolkata"), try Self.inZone(last, "Asia/Kolkata"),
                    ])
                #expect(
                    shown.freshness == "Data as of the last fold, \(try Self.inZone(shown.lastFolded, "Asia/Kolkata"))")

                // When unique_visitors cannot answer (here it waits for a lock past the statement timeout, as a long
                // range on a large history does), the page shows the other reports and says why.
                let locker = try await harness.database()
                try await locker.execute("BEGIN; LOCK TABLE member_days IN ACCESS EXCLUSIVE MODE")
                let degraded = try await Self.openPage(
                    port: port, token: "s3cret-token", zone: "UTC", range: "all", space: "",
                    screenshot: Self.output.appendingPathComponent("dashboard-without-unique.png").path)
                try await locker.execute("ROLLBACK")
                #expect(degraded.error == nil)
                #expect(degraded.unique == nil)
                #expect(degraded.summary.dropFirst(2).first == "not available")
                #expect(
                    degraded.uniqueError
                        == "Unique visitors: the report took longer than the statement timeout (DB_STATEMENT_TIMEOUT_MS, "
                        + "500 ms): narrow the range or try again later")
                let utcDays = try JSONDecoder().decode(
                    [String: Int].self, from: try await answer("/api/reports/daily_usage?tz=UTC&fill=zero"))
                #expect(degraded.data == degraded.labels.map { utcDays[$0] ?? -1 })
                #expect(degraded.data.reduce(0, +) == expected.checkins)
                #expect(degraded.pageErrors.allSatisfy { $0.contains("status of 503") }, "\(degraded.pageErrors)")
            }
            #expect(FileManager.default.fileExists(atPath: screenshot.path))
        }
    }

    @Test func withNoDataThePageSaysSoAndIsAccessibleToo() async throws {
        try await ReportAPIFixture.withFolded([]) { harness in
            let tokens = try ReportAPIFixture.tokensFile(ReportAPIFixture.digest + "\n")
            defer { try? FileManager.default.removeItem(atPath: tokens) }
            let pool = PostgresPool(
                configuration: try TestServers.readerDatabase(schema: harness.schema), maxConnections: 4,
                logger: TestServers.logger)
            let router = ReportAPIApp.buildRouter(
                repository: PostgresReportRepository(pool: pool),
                zones: ReportZones(folded: ReportAPIFixture.zones, defaultZone: "UTC"), cacheLifetime: .seconds(1),
                tokens: try APITokens.fromFile(tokens), registry: PrometheusCollectorRegistry(),
                logger: TestServers.logger)
            try FileManager.default.createDirectory(at: Self.output, withIntermediateDirectories: true)
            try await Application(router: router).test(.live) { client in
                let shown = try await Self.openPage(
                    port: try #require(client.port), token: "s3cret-token", zone: "UTC", range: "30", space: "",
                    screenshot: Self.output.appendingPathComponent("dashboard-empty.png").path)
                #expect(shown.error == nil)
                #expect(shown.pageErrors.isEmpty)
                #expect(shown.axe.isEmpty, "\(shown.axe)")
                #expect(shown.freshness == "Nothing folded yet")
                #expect(shown.summary == ["0", "0", "0", "none", "none"])
                #expect(shown.members.isEmpty)
            }
            await pool.close()
        }
    }

    /// Runs `dashboard.py` and decodes what it printed.
    static func openPage(port: Int, token: String, zone: String, range: String, space: String, screenshot: String)
        async throws -> Shown
    {
        let arguments = ["python3", script.path, "http://127.0.0.1:\(port)", token, zone, range, space, screenshot]
        let (status, data) = try await runToEnd(arguments)
        #expect(status == 0, "dashboard.py failed")
        return try JSONDecoder().decode(Shown.self, from: data)
    }
}
