import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import Testing

/// Answers as fresh as the rollups, cached or not: the report API hears every fold's commit, and every answer says
/// which version of the rollups it holds.
@Suite(.serialized)
struct FreshnessTests {
    /// Folds one check-in of `user` into `schema`, committed.
    static func fold(user: Int32, into schema: String) async throws {
        let owner = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        let event = Event(
            id: UUID(), kind: .checkin, userID: user, occurredAt: Timestamp(year: 2023, month: 2, day: 8, hour: 9),
            spaceID: "hq")
        _ = try await owner.withTransaction { try RollupWriter().fold([event], on: $0) }
    }

    /// Runs `body` with a router whose cache keeps answers an hour unless a fold's signal says otherwise, once the
    /// signal is heard (at the generation given to `body`). Reports are read with `reader` (default the SELECT-only
    /// role) and the signal heard with `signalDatabase` (default the owner's role, so that a test may end the signal's
    /// connection: a role may end its own backends).
    static func withSignalledRouter(
        schema: String, reader: PostgresConfiguration? = nil, signalDatabase: PostgresConfiguration? = nil,
        logger: Logger = TestServers.logger,
        _ body: (Router<ReportRequestContext>, FoldSignal, UInt64) async throws -> Void
    ) async throws {
        // Named so that a test of this suite finds its signal's connection, and no other suite's.
        var configuration = try TestServers.database(schema: schema)
        configuration.applicationName = TestServers.uniqueName("signal")
        let signal = FoldSignal(
            configuration: signalDatabase ?? configuration, registry: PrometheusCollectorRegistry(), logger: logger)
        let pool = PostgresPool(
            configuration: try reader ?? TestServers.readerDatabase(schema: schema), maxConnections: 2,
            logger: TestServers.logger)
        let router = ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            cacheLifetime: .seconds(3_600),
            foldSignal: signal,
            registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await signal.run() }
            let heard = await signal.generation(after: nil)
            try await body(router, signal, heard)
            group.cancelAll()
        }
    }

    static func get(
        _ client: some TestClientProtocol, _ uri: String, _ headers: HTTPFields = [:]
    ) async throws -> (status: Int, body: String, headers: HTTPFields) {
        try await client.execute(uri: uri, method: .get, headers: headers) {
            (Int($0.status.code), String(buffer: $0.body), $0.headers)
        }
    }

    @Test func aFoldsCommitMakesTheNextAnswerFreshAndAnUnchangedOneAnswers304() async throws {
        let schema = try await ReportAPILimitsTests.schema()
        try await Self.withSignalledRouter(schema: schema) { router, signal, heard in
            try await Application(router: router).test(.router) { client in
                let empty = try await Self.get(client, "/api/reports/summary")
                #expect(empty.status == 200)
                #expect(empty.body.hasPrefix(#"{"checkins":0,"#))
                #expect(empty.headers[.eTag] == #""0""#)
                #expect(empty.headers[.cacheControl] == "no-cache")
                #expect(empty.headers[.lastModified] == nil, "nothing was ever folded")
                let unchanged = try await Self.get(client, "/api/reports/summary", [.ifNoneMatch: #""0""#])
                #expect(unchanged.status == 304)
                #expect(unchanged.body.isEmpty)
                #expect(unchanged.headers[.eTag] == #""0""#)

                try await Self.fold(user: 7, into: schema)
                _ = await signal.generation(after: heard)
                let folded = try await Self.get(client, "/api/reports/summary", [.ifNoneMatch: #""0""#])
                #expect(folded.status == 200, "the cached answer was dropped at the fold's commit")
                #expect(folded.body.hasPrefix(#"{"checkins":1,"users":1,"#))
                #expect(folded.headers[.eTag] == #""1""#)
                let lastModified = try #require(folded.headers[.lastModified])
                #expect(
                    try await Self.get(client, "/api/reports/summary", [.ifNoneMatch: #"W/"0", "1""#]).status == 304)
                #expect(
                    try await Self.get(client, "/api/reports/summary", [.ifModifiedSince: lastModified]).status == 304)
                #expect(
                    try await Self.get(
                        client, "/api/reports/summary", [.ifModifiedSince: "Thu, 01 Jan 2015 00:00:00 GMT"]
                    ).status == 200)
                let daily = try await Self.get(client, "/api/reports/daily_usage")
                #expect(daily.body == #"{"2023-02-08":1}"#)
                #expect(daily.headers[.eTag] == #""1""#)
                let users = try await Self.get(client, "/api/reports/user_visits?limit=10", [.ifNoneMatch: #""1""#])
                #expect(users.status == 304)
            }
        }
        try await ReportAPILimitsTests.drop(schema)
    }

    @Test func aLostSignalIsLoggedAndHeardAgainAndFoldsAreFreshAfterIt() async throws {
        let schema = try await ReportAPILimitsTests.schema()
        let (logger, logs) = CapturingLogHandler.logger()
        try await Self.withSignalledRouter(schema: schema, logger: logger) { router, signal, heard in
            try await Application(router: router).test(.router) { client in
                #expect(try await Self.get(client, "/api/reports/summary").body.hasPrefix(#"{"checkins":0,"#))
                let owner = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
                try await owner.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'test_signal_%' "
                        + "AND pid <> pg_backend_pid()")
                // Heard again: a new generation, since folds may have been missed.
                let heardAgain = await signal.generation(after: heard)
                #expect(heardAgain > heard)
                #expect(
                    logs.entries.withLock { entries in
                        entries.contains { $0.message.hasPrefix("Lost the signal of folds") }
                    })
                try await Self.fold(user: 9, into: schema)
                _ = await signal.generation(after: heardAgain)
                #expect(try await Self.get(client, "/api/reports/summary").body.hasPrefix(#"{"checkins":1,"#))
            }
        }
        try await ReportAPILimitsTests.drop(schema)
    }
}

/// The consumer's lag metrics, read from a running `consumer` as Prometheus would.
@Suite
struct ConsumerLagMetricsTests {
    @Test func theConsumerExportsTheQueueItsLagAndTheTimeSinceItsLastCommit() async throws {
        let harness = try await ConsumerHarness.make(zones: ["UTC"])
        let port = Int.random(in: 40_000..<45_000)
        let consumer = try FaultTests.startConsumer(harness, changing: ["METRICS_PORT": "\(port)"])
        defer {
            kill(consumer.processIdentifier, SIGTERM)
            consumer.waitUntilExit()
        }
        for user in 1...3 {
            let published = try ProgramStartTests.run(
                "producer", ["publish", "--user-id", "\(user)", "--at", "2023-02-08T09:00:00Z"],
                environment: ["EXCHANGE": harness.topology.exchange])
            #expect(published.status == 0)
        }
        try await harness.waitUntilCounted(3)
        var metrics: [String: Double] = [:]
        let deadline = ContinuousClock.now + .seconds(30)
        // The queue's depth is read every few seconds, until it is read empty; the histogram counts each batch once committed; the gauges
        // are set as the consume loop turns, at least twice a second.
        while metrics["coworking_consumer_queue_ready_messages"] != 0
            || metrics["coworking_consumer_publish_to_commit_seconds_count"] == nil
            || metrics["coworking_consumer_unacknowledged_messages"] != 0,
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(200))
            metrics = Self.samples(try await HTTPGet.text(port: port, path: "/metrics"))
        }
        #expect(metrics["coworking_consumer_queue_ready_messages"] == 0)
        #expect(metrics["coworking_consumer_unacknowledged_messages"] == 0)
        #expect((metrics["coworking_consumer_publish_to_commit_seconds_count"] ?? 0) >= 1)
        #expect((metrics["coworking_consumer_publish_to_commit_seconds_bucket{le=\"60.0\"}"] ?? 0) >= 1)
        #expect((metrics["coworking_consumer_oldest_event_age_seconds"] ?? -1) >= 0)
        #expect((metrics["coworking_consumer_seconds_since_last_commit"] ?? -1) >= 0)
        #expect(metrics["coworking_consumer_seconds_since_last_commit"].map { $0 < 30 } == true)
        try await harness.cleanup()
    }

    /// The samples of a Prometheus text answer, by name with labels.
    static func samples(_ answer: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in answer.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { samples[String(parts[0])] = value }
        }
        return samples
    }
}

/// The Grafana dashboard of `k8s/optional` queries only metrics that the programs export.
@Suite
struct DashboardTests {
    /// The metric names the dashboard's queries use, histogram series reduced to their metric.
    static func dashboardMetrics() throws -> Set<String> {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("k8s/optional/grafana-dashboard.json").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let names = try Regex(#"coworking_[a-z_]+"#)
        var metrics: Set<String> = []
        for match in text.matches(of: names) {
            var name = String(text[match.range])
            for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
            metrics.insert(name)
        }
        return metrics
    }

    @Test func everyQueryNamesAMetricTheConsumerOrTheReportAPIExports() async throws {
        let harness = try await ConsumerHarness.make(zones: ["UTC"])
        let (consumerPort, apiPort) = (Int.random(in: 45_000..<47_000), Int.random(in: 47_000..<49_000))
        let consumer = try FaultTests.startConsumer(harness, changing: ["METRICS_PORT": "\(consumerPort)"])
        let api = Process()
        api.executableURL = FaultTests.consumerBinary.deletingLastPathComponent().appendingPathComponent("report-api")
        api.environment = try harness.environment().merging([
            "APP_PORT": "\(apiPort)", "BIND_ADDRESS": "127.0.0.1", "LOG_LEVEL": "error",
        ]) { $1 }
        try api.run()
        defer {
            for process in [consumer, api] {
                kill(process.processIdentifier, SIGTERM)
                process.waitUntilExit()
            }
        }
        let published = try ProgramStartTests.run(
            "producer", ["publish", "--user-id", "1", "--at", "2023-02-08T09:00:00Z"],
            environment: ["EXCHANGE": harness.topology.exchange])
        #expect(published.status == 0)
        try await harness.waitUntilCounted(1)
        var exported = ""
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            _ = try await HTTPGet.text(port: apiPort, path: "/api/reports/summary")
            exported =
                try await HTTPGet.text(port: consumerPort, path: "/metrics")
                + HTTPGet.text(port: apiPort, path: "/metrics")
            if exported.contains("coworking_consumer_publish_to_commit_seconds_count") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let missing = try Self.dashboardMetrics().filter { !exported.contains("# TYPE \($0) ") }
        #expect(missing.isEmpty, "the dashboard queries metrics nobody exports: \(missing.sorted())")
        #expect(try Self.dashboardMetrics().count >= 12)
        try await harness.cleanup()
    }
}
