import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
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

    @Test func aFoldsCommitMakesTheNextAnswerFreshAndAnUnchangedOneAnswers304() async throws {
        try await Schemas.withMigrated { schema in
            try await ReportAPIFixture.withSignalledRouter(schema: schema) { router, signal, heard in
                try await Application(router: router).test(.router) { client in
                    let empty = try await ReportAPIFixture.get(client, "/api/reports/summary")
                    #expect(empty.status == 200)
                    #expect(empty.body.hasPrefix(#"{"checkins":0,"#))
                    #expect(empty.headers[.eTag] == #""0""#)
                    #expect(empty.headers[.cacheControl] == "no-cache")
                    #expect(empty.headers[.lastModified] == nil, "nothing was ever folded")
                    let unchanged = try await ReportAPIFixture.get(
                        client, "/api/reports/summary", [.ifNoneMatch: #""0""#])
                    #expect(unchanged.status == 304)
                    #expect(unchanged.body.isEmpty)
                    #expect(unchanged.headers[.eTag] == #""0""#)

                    try await Schemas.fold(user: 7, into: schema)
                    _ = await signal.generation(after: heard)
                    let folded = try await ReportAPIFixture.get(client, "/api/reports/summary", [.ifNoneMatch: #""0""#])
                    #expect(folded.status == 200, "the cached answer was dropped at the fold's commit")
                    #expect(folded.body.hasPrefix(#"{"checkins":1,"users":1,"#))
                    #expect(folded.headers[.eTag] == #""1""#)
                    let lastModified = try #require(folded.headers[.lastModified])
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/summary", [.ifNoneMatch: #"W/"0", "1""#])
                            .status == 304)
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/summary", [.ifModifiedSince: lastModified])
                            .status == 304)
                    #expect(
                        try await ReportAPIFixture.get(
                            client, "/api/reports/summary", [.ifModifiedSince: "Thu, 01 Jan 2015 00:00:00 GMT"]
                        ).status == 200)
                    let daily = try await ReportAPIFixture.get(client, "/api/reports/daily_usage")
                    #expect(daily.body == #"{"2023-02-08":1}"#)
                    #expect(daily.headers[.eTag] == #""1""#)
                    let users = try await ReportAPIFixture.get(
                        client, "/api/reports/user_visits?limit=10", [.ifNoneMatch: #""1""#])
                    #expect(users.status == 304)
                }
            }
        }
    }

    @Test func aLostSignalIsLoggedAndHeardAgainAndFoldsAreFreshAfterIt() async throws {
        try await Schemas.withMigrated { schema in
            let (logger, logs) = CapturingLogHandler.logger()
            // Named so that this test ends its own signal's connection, and no other test's.
            let signalName = TestServers.uniqueName("signal")
            var signalDatabase = try TestServers.database(schema: schema)
            signalDatabase.applicationName = signalName
            try await ReportAPIFixture.withSignalledRouter(
                schema: schema, signalDatabase: signalDatabase, logger: logger
            ) { router, signal, heard in
                try await Application(router: router).test(.router) { client in
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/summary").body.hasPrefix(
                            #"{"checkins":0,"#))
                    let owner = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
                    try await owner.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        [signalName])
                    // Heard again: a new generation, since folds may have been missed.
                    let heardAgain = await signal.generation(after: heard)
                    #expect(heardAgain > heard)
                    #expect(
                        logs.entries.withLock { entries in
                            entries.contains { $0.message.hasPrefix("Lost the signal of folds") }
                        })
                    try await Schemas.fold(user: 9, into: schema)
                    _ = await signal.generation(after: heardAgain)
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/summary").body.hasPrefix(
                            #"{"checkins":1,"#))
                }
            }
        }
    }
}

/// The consumer's lag metrics, read from a running `consumer` as Prometheus would.
@Suite
struct ConsumerLagMetricsTests {
    @Test func theConsumerExportsTheQueueItsLagAndTheTimeSinceItsLastCommit() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let port = TestServers.freePort()
            let consumer = try Programs.startConsumer(harness, changing: ["METRICS_PORT": "\(port)"])
            defer { Programs.stop(consumer) }
            for user in 1...3 {
                let published = try Programs.run(
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
        }
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
        let path = TestServers.repository.appendingPathComponent("k8s/optional/grafana-dashboard.json").path
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
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let (consumerPort, apiPort) = (TestServers.freePort(), TestServers.freePort())
            let consumer = try Programs.startConsumer(harness, changing: ["METRICS_PORT": "\(consumerPort)"])
            let api = Process()
            api.executableURL = Programs.executable("report-api")
            api.environment = try harness.environment().merging([
                "APP_PORT": "\(apiPort)", "BIND_ADDRESS": "127.0.0.1", "LOG_LEVEL": "error",
            ]) { $1 }
            try api.run()
            defer { for process in [consumer, api] { Programs.stop(process) } }
            let published = try Programs.run(
                "producer", ["publish", "--user-id", "1", "--at", "2023-02-08T09:00:00Z"],
                environment: ["EXCHANGE": harness.topology.exchange])
            #expect(published.status == 0)
            try await harness.waitUntilCounted(1)
            // Asked until both programs export every metric, for 30 s at most: on a busy machine the report API
            // may start listening after the consumer's first fold.
            let queried = try Self.dashboardMetrics()
            var missing = queried
            let deadline = ContinuousClock.now + .seconds(30)
            while !missing.isEmpty, ContinuousClock.now < deadline {
                _ = try await HTTPGet.text(port: apiPort, path: "/api/reports/summary")
                let exported =
                    try await HTTPGet.text(port: consumerPort, path: "/metrics")
                    + HTTPGet.text(port: apiPort, path: "/metrics")
                missing = queried.filter { !exported.contains("# TYPE \($0) ") }
                if !missing.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(missing.isEmpty, "the dashboard queries metrics nobody exports: \(missing.sorted())")
            #expect(queried.count >= 12)
        }
    }
}
