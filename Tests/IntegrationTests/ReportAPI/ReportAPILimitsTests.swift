import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import PostgresClient
import Prometheus
import ReportAPICore
import TestSupport
import Testing

/// No caller can starve the others: slow statements, a full pool and clients that stop reading are bounded, each
/// against the real PostgreSQL.
@Suite(.serialized)
struct ReportAPILimitsTests {

    @Test func aQueryPastTheStatementTimeoutAnswers503AndItsConnectionServesTheNextRequest() async throws {
        try await Schemas.withMigrated { schema in
            let router = try ReportAPIFixture.router(
                schema: schema, poolSize: 1, statementTimeout: .milliseconds(300), poolTimeout: .seconds(5))
            let locker = try await Schemas.lockFoldTotals(schema)
            try await Application(router: router).test(.router) { client in
                try await client.execute(uri: "/api/reports/summary", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.retryAfter] == "1")
                    #expect(
                        String(buffer: response.body)
                            == #"{"error":"the report took longer than the statement timeout (DB_STATEMENT_TIMEOUT_MS, 300 ms): narrow the range or try again later"}"#
                    )
                }
                try await locker.execute("ROLLBACK")
                // The pool's one connection answers: the timeout left it healthy.
                try await client.execute(uri: "/api/reports/summary", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(
                        String(buffer: response.body)
                            == #"{"checkins":0,"users":0,"first_checkin_at":null,"last_checkin_at":null,"last_folded_at":null}"#
                    )
                }
            }
        }
    }

    @Test func aFullPoolAnswers503WithRetryAfterWhileReadinessStillAnswersInTime() async throws {
        try await Schemas.withMigrated { schema in
            let router = try ReportAPIFixture.router(
                schema: schema, poolSize: 1, statementTimeout: .seconds(30), poolTimeout: .milliseconds(200))
            try await Application(router: router).test(.router) { client in
                // The probe's connection is opened before the machine gets busy with the lock, and its answer is
                // asked again once the one it gave is a second old: what is tried below is a question asked while
                // the pool is full, not the opening of a connection (which a busy machine once took past 2 s).
                try await client.execute(uri: "/readiness_check", method: .get) { #expect($0.status == .ok) }
                let warmed = ContinuousClock.now
                let locker = try await Schemas.lockFoldTotals(schema)
                // The pool's one connection waits for the lock with the first request.
                async let first = client.execute(uri: "/api/reports/summary", method: .get) { $0.status }
                try await Schemas.waitForALockWait(on: "fold_totals", in: TestServers.database(schema: schema))

                // The answers' statuses say they were in time: without the pool's timeout the report would wait for
                // the lock until the rollback below, and the probe answers "failed" when its 2 s deadline passes.
                try await client.execute(uri: "/api/reports/daily_usage", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.retryAfter] == "1")
                    #expect(
                        String(buffer: response.body)
                            == #"{"error":"every database connection stayed busy for 200 ms; try again shortly"}"#)
                }
                try await Task.sleep(until: warmed + .seconds(1))
                try await client.execute(uri: "/readiness_check", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(String(buffer: response.body) == "ok")
                }

                try await locker.execute("ROLLBACK")
                #expect(try await first == .ok)
            }
        }
    }

    @Test func aRangeInAZoneWithoutDailyRowsIsBoundedByTheDaysWithData() async throws {
        try await Schemas.withMigrated { schema in
            let owner = try await PostgresConnection.connect(
                TestServers.database(schema: schema), logger: TestServers.logger)
            // One visit a day at noon UTC, 2020 to 2023: 1461 days.
            try await owner.execute(
                """
                INSERT INTO visits_quarter_hour (bucket_start, space_id, visits)
                SELECT d + interval '12 hours', 'hq', 1 FROM generate_series('2020-01-01'::timestamptz, '2023-12-31', '1 day') d
                """)
            let router = try ReportAPIFixture.router(
                schema: schema, poolSize: 2, statementTimeout: .seconds(5), poolTimeout: .seconds(1))
            let tooLong = { (days: Int) in
                #"{"error":"from..to spans \#(days) days of data in Asia/Kathmandu, a zone without daily rows (not in "#
                    + #"REPORT_TIMEZONES), where a report may span 1096 days at most: narrow from and to, or ask in a zone "#
                    + #"of REPORT_TIMEZONES"}"#
            }
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/daily_usage?tz=Asia/Kathmandu")
                    == (.badRequest, tooLong(1461)))
            #expect(
                try await ReportAPIFixture.get(
                    router, "/api/reports/hourly_usage?tz=Asia/Kathmandu&from=2020-06-01&to=2024-06-01")
                    == (.badRequest, tooLong(1309)), "an explicit end past the data counts to the last day with data")
            let lastYear = try await ReportAPIFixture.get(
                router, "/api/reports/daily_usage?tz=Asia/Kathmandu&from=2023-01-01")
            #expect(lastYear.0 == .ok)
            #expect(lastYear.1.split(separator: ",").count == 365)
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/hourly_usage?tz=Asia/Kathmandu&to=2020-12-31")
                    == (
                        .ok,
                        #"{"00":0,"01":0,"02":0,"03":0,"04":0,"05":0,"06":0,"07":0,"08":0,"09":0,"10":0,"11":0,"#
                            + #""12":0,"13":0,"14":0,"15":0,"16":0,"17":366,"18":0,"19":0,"20":0,"21":0,"22":0,"23":0}"#
                    ))
            // Years without data count for nothing: the range is cut to the days with data, so five years before the
            // data and its first half year (2,008 days, past the 1,096) are answered over that half year.
            let yearsBefore = try await ReportAPIFixture.get(
                router, "/api/reports/daily_usage?tz=Asia/Kathmandu&from=2015-01-01&to=2020-06-30")
            #expect(yearsBefore.0 == .ok, "\(yearsBefore.1)")
            #expect(yearsBefore.1.split(separator: ",").count == 182)
            #expect(
                try await ReportAPIFixture.get(
                    router, "/api/reports/daily_usage?tz=Asia/Kathmandu&from=0001-01-01&to=0001-12-31")
                    == (.ok, "{}"))
        }
    }

    @Test func readinessAnswersFailedWithinTwoSecondsWhenTheDatabaseHangs() async throws {
        // A listener that accepts and never answers stands for a database that hangs mid-handshake.
        let listener = try TCPListener()
        var configuration = try TestServers.readerDatabase(schema: "public")
        configuration.servers = [.init(host: "127.0.0.1", port: listener.port)]
        let pool = PostgresPool(configuration: configuration, maxConnections: 1, logger: TestServers.logger)
        let router = ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            registry: PrometheusCollectorRegistry(),
            logger: TestServers.logger)
        let asked = ContinuousClock.now
        #expect(try await ReportAPIFixture.get(router, "/readiness_check") == (.serviceUnavailable, "failed"))
        // Answered by the probe's 2 s deadline, never by the database; a machine busy with other tests has woken
        // that deadline's timer a second late.
        let took = ContinuousClock.now - asked
        #expect(took >= .seconds(2) && took < .seconds(10), "answered after \(took)")
    }

    @Test func aKeptAliveConnectionWithoutARequestIsClosedAfterTheIdleTimeout() async throws {
        var settings = ReportAPISettings(
            database: try TestServers.readerDatabase(schema: "public"), idleTimeout: .seconds(1))
        settings.bindAddress = "127.0.0.1"
        let application = ReportAPIApp.buildApplication(
            settings: settings, registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
        try await application.test(.live) { client in
            let port = try #require(client.port)
            // Kept alive: the client asks nothing more, and the server closes the connection after a second.
            let idle = try StalledClient(port: port, path: "/health_check")
            let started = ContinuousClock.now
            let received = try await idle.readToEnd()
            #expect(received.hasPrefix("HTTP/1.1 200") && received.hasSuffix("ok"))
            #expect(ContinuousClock.now - started < .seconds(5), "the idle connection stayed open")
        }
    }

    /// `coworking_api_stalled_connections_closed_total` as the API's `/metrics` tells it.
    static func stalledConnectionsClosed(_ client: some TestClientProtocol) async throws -> Int {
        try await client.execute(uri: "/metrics", method: .get) { response in
            let line = String(buffer: response.body).split(separator: "\n").first {
                $0.hasPrefix("coworking_api_stalled_connections_closed_total ")
            }
            return line.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        }
    }

    /// Clients that ask for every user and never read: with the stream's pages read on connections taken and
    /// returned per page, they hold none of the pool's two connections, and every other report answers at once.
    /// Past the write timeout, the server closes their connections.
    @Test func clientsThatStopReadingHoldNoDatabaseConnectionAndAreClosedAfterTheWriteTimeout() async throws {
        let users = 200_000
        try await Schemas.withMigrated(users: users) { schema in
            var settings = ReportAPISettings(
                database: try TestServers.readerDatabase(schema: schema), poolSize: 2, poolTimeout: .milliseconds(500),
                writeTimeout: .seconds(2))
            settings.bindAddress = "127.0.0.1"
            // Each stream of every user is a costly report that holds its turn until it is written or closed.
            settings.limits.costlyConcurrency = 4
            let application = ReportAPIApp.buildApplication(
                settings: settings, registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
            try await application.test(.live) { client in
                let port = try #require(client.port)
                let stalled = try (0..<4).map { _ in try StalledClient(port: port, path: "/api/reports/user_visits") }
                // Each stalled client's stream has read pages and is blocked writing.
                try await Task.sleep(for: .milliseconds(500))
                // Had the streams held the pool's connections, these would get a 503 after its 500 ms timeout.
                for uri in ["/api/reports/summary", "/api/reports/daily_usage", "/api/reports/user_visits?limit=2"] {
                    try await client.execute(uri: uri, method: .get) { response in
                        #expect(response.status == .ok, "\(uri)")
                    }
                }
                // Past the write timeout, each stalled connection is closed before its answer is whole.
                let deadline = ContinuousClock.now + .seconds(60)
                while try await Self.stalledConnectionsClosed(client) < stalled.count, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(try await Self.stalledConnectionsClosed(client) == stalled.count)
                for client in stalled {
                    let reading = ContinuousClock.now
                    let received = try await client.readToEnd()
                    #expect(ContinuousClock.now - reading < .seconds(5), "the connection was still open")
                    #expect(received.hasPrefix("HTTP/1.1 200"))
                    #expect(!received.contains(#""\#(users)":"#), "the whole answer arrived")
                }
            }
        }
    }
}
