import ConsumerCore
import Foundation
import Glibc
import Hummingbird
import HummingbirdTesting
import PostgresClient
import Prometheus
import ReportAPICore
import TestSupport
import Testing

/// No caller can starve the others: slow statements, a full pool and clients that stop reading are bounded, each
/// against the real PostgreSQL.
@Suite(.serialized)
struct ReportAPILimitsTests {
    /// A migrated schema of the test's own, with `users` users of one visit each.
    static func schema(users: Int = 0) async throws -> String {
        let schema = TestServers.uniqueName("limits")
        let owner = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        _ = try await Migrator(schema: schema, zones: ["UTC"]).run(on: owner, logger: TestServers.logger)
        try await owner.execute(
            "INSERT INTO user_activity (user_id, visits) SELECT g, 1 FROM generate_series(1, \(users)) AS g")
        return schema
    }

    static func drop(_ schema: String) async throws {
        try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger).execute(
            "DROP SCHEMA \(schema) CASCADE")
    }

    /// A connection holding an exclusive lock on `fold_totals` of `schema` until it rolls back, so that the
    /// summary's query waits.
    static func lockFoldTotals(_ schema: String) async throws -> PostgresConnection {
        let locker = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        try await locker.execute("BEGIN; LOCK TABLE fold_totals IN ACCESS EXCLUSIVE MODE")
        return locker
    }

    /// Waits until some statement waits for a lock in `schema`'s database.
    static func waitForALockWait() async throws {
        let observer = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        for _ in 0..<500 {
            if try await observer.query("SELECT count(*) FROM pg_locks WHERE NOT granted")[0].int(0) > 0 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no statement came to wait for the lock")
    }

    static func router(schema: String, poolSize: Int, statementTimeout: Duration, poolTimeout: Duration) throws
        -> Router<ReportRequestContext>
    {
        var configuration = try TestServers.readerDatabase(schema: schema)
        configuration.statementTimeout = statementTimeout
        let pool = PostgresPool(
            configuration: configuration, maxConnections: poolSize, acquireTimeout: poolTimeout,
            logger: TestServers.logger)
        return ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            registry: PrometheusCollectorRegistry(),
            logger: TestServers.logger)
    }

    @Test func aQueryPastTheStatementTimeoutAnswers503AndItsConnectionServesTheNextRequest() async throws {
        let schema = try await Self.schema()
        let router = try Self.router(
            schema: schema, poolSize: 1, statementTimeout: .milliseconds(300), poolTimeout: .seconds(5))
        let locker = try await Self.lockFoldTotals(schema)
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
        try await Self.drop(schema)
    }

    @Test func aFullPoolAnswers503WithRetryAfterWhileReadinessStillAnswersInTime() async throws {
        let schema = try await Self.schema()
        let router = try Self.router(
            schema: schema, poolSize: 1, statementTimeout: .seconds(30), poolTimeout: .milliseconds(200))
        let locker = try await Self.lockFoldTotals(schema)
        try await Application(router: router).test(.router) { client in
            // The pool's one connection waits for the lock with the first request.
            async let first = client.execute(uri: "/api/reports/summary", method: .get) { $0.status }
            try await Self.waitForALockWait()

            let asked = ContinuousClock.now
            try await client.execute(uri: "/api/reports/daily_usage", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] == "1")
                #expect(
                    String(buffer: response.body)
                        == #"{"error":"every database connection stayed busy for 200 ms; try again shortly"}"#)
            }
            #expect(ContinuousClock.now - asked < .seconds(2))
            let probed = ContinuousClock.now
            try await client.execute(uri: "/readiness_check", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ok")
            }
            #expect(ContinuousClock.now - probed < .seconds(2))

            try await locker.execute("ROLLBACK")
            #expect(try await first == .ok)
        }
        try await Self.drop(schema)
    }

    @Test func aRangeInAZoneWithoutDailyRowsIsBoundedByTheDaysWithData() async throws {
        let schema = try await Self.schema()
        let owner = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        // One visit a day at noon UTC, 2020 to 2023: 1461 days.
        try await owner.execute(
            """
            INSERT INTO visits_quarter_hour (bucket_start, space_id, visits)
            SELECT d + interval '12 hours', 'hq', 1 FROM generate_series('2020-01-01'::timestamptz, '2023-12-31', '1 day') d
            """)
        let router = try Self.router(
            schema: schema, poolSize: 2, statementTimeout: .seconds(5), poolTimeout: .seconds(1))
        let tooLong = { (days: Int) in
            #"{"error":"from..to spans \#(days) days of data in Asia/Kathmandu, a zone without daily rows (not in "#
                + #"REPORT_TIMEZONES), where a report may span 1096 days at most: narrow from and to, or ask in a zone "#
                + #"of REPORT_TIMEZONES"}"#
        }
        #expect(
            try await ReportAPITests.get(router, "/api/reports/daily_usage?tz=Asia/Kathmandu")
                == (.badRequest, tooLong(1461)))
        #expect(
            try await ReportAPITests.get(
                router, "/api/reports/hourly_usage?tz=Asia/Kathmandu&from=2020-06-01&to=2024-06-01")
                == (.badRequest, tooLong(1309)), "an explicit end past the data counts to the last day with data")
        let lastYear = try await ReportAPITests.get(
            router, "/api/reports/daily_usage?tz=Asia/Kathmandu&from=2023-01-01")
        #expect(lastYear.0 == .ok)
        #expect(lastYear.1.split(separator: ",").count == 365)
        #expect(
            try await ReportAPITests.get(router, "/api/reports/hourly_usage?tz=Asia/Kathmandu&to=2020-12-31")
                == (
                    .ok,
                    #"{"00":0,"01":0,"02":0,"03":0,"04":0,"05":0,"06":0,"07":0,"08":0,"09":0,"10":0,"11":0,"#
                        + #""12":0,"13":0,"14":0,"15":0,"16":0,"17":366,"18":0,"19":0,"20":0,"21":0,"22":0,"23":0}"#
                ))
        // Years without data cost nothing: the range is cut to the days with data.
        let asked = ContinuousClock.now
        #expect(
            try await ReportAPITests.get(
                router, "/api/reports/daily_usage?tz=Asia/Kathmandu&from=0001-01-01&to=0001-12-31")
                == (.ok, "{}"))
        #expect(ContinuousClock.now - asked < .seconds(1))
        try await Self.drop(schema)
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
        #expect(try await ReportAPITests.get(router, "/readiness_check") == (.serviceUnavailable, "failed"))
        let took = ContinuousClock.now - asked
        #expect(took >= .seconds(2) && took < .seconds(3), "answered after \(took)")
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
        let schema = try await Self.schema(users: users)
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
            for uri in ["/api/reports/summary", "/api/reports/daily_usage", "/api/reports/user_visits?limit=2"] {
                let asked = ContinuousClock.now
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok, "\(uri)")
                }
                #expect(ContinuousClock.now - asked < .seconds(1), "\(uri) waited")
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
        try await Self.drop(schema)
    }
}

/// A TCP client with a small receive buffer that sends one request and reads nothing until asked.
final class StalledClient: Sendable {
    private let socket: Int32

    /// Sends `GET path`; with `closing`, asks the server to close the connection after its answer.
    init(port: Int, path: String, closing: Bool = false, authorization: String? = nil) throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.socket = socket
        var size: Int32 = 4096
        setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request =
            "GET \(path) HTTP/1.1\r\nHost: localhost\r\n" + (closing ? "Connection: close\r\n" : "")
            + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n"
        _ = request.withCString { send(socket, $0, strlen($0), 0) }
    }

    deinit {
        close(socket)
    }

    /// What arrives until the server closes the connection (or 10 s pass without a byte), read off the pool.
    func readToEnd() async throws -> String {
        try await offThePool { self.receiveToEnd() }
    }

    private func receiveToEnd() -> String {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// A listening socket on a free loopback port that accepts connections and never answers.
final class TCPListener {
    private let socket: Int32
    let port: Int

    init() throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && listen(socket, 16) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        self.socket = socket
        port = Int(UInt16(bigEndian: address.sin_port))
        try #require(bound)
    }

    deinit {
        close(socket)
    }
}

extension sockaddr_in {
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}
