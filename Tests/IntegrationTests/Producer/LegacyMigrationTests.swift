import Basics
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

/// Moving off the Flask service: `producer backfill --follow` feeds the pipeline from a live legacy database, and
/// `producer parity` compares the two services.
@Suite(.serialized)
struct LegacyMigrationTests {
    /// A `producer` process with the legacy database in its environment, its standard output and error kept.
    final class Producer: @unchecked Sendable {
        let process = Process()
        let output = Pipe()
        let errors = Pipe()

        init(_ arguments: [String], legacyURL: String, exchange: String, environment: [String: String] = [:]) throws {
            process.executableURL = Programs.executable(
                "producer")
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(
                ["LEGACY_DATABASE_URL": legacyURL, "EXCHANGE": exchange, "LOG_LEVEL": "warning"].merging(environment) {
                    $1
                }
            ) { _, given in given }
            process.standardOutput = output
            process.standardError = errors
            try process.run()
        }

        /// Waits for the process to end; its status and standard output.
        func finish() async throws -> (status: Int32, output: String) {
            let data = try await offThePool { self.output.fileHandleForReading.readDataToEndOfFile() }
            try await offThePool { self.process.waitUntilExit() }
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }

    /// Runs `statements` on the legacy database.
    static func legacy(_ url: String, _ statements: String) async throws {
        try await PostgresConnection.withConnection(
            PostgresConfiguration(url: url, variable: "LEGACY_DATABASE_URL"), logger: TestServers.logger
        ) { try await $0.execute(statements) }
    }

    /// What the pipeline must count: every user joined and every used token of the legacy database.
    static func legacyEvents(_ url: String) async throws -> Int {
        try await PostgresConnection.withConnection(
            PostgresConfiguration(url: url, variable: "LEGACY_DATABASE_URL"), logger: TestServers.logger
        ) {
            try await $0.query(
                "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens WHERE used_at IS NOT NULL)")[0]
                .int(0)
        }
    }

    /// Waits until the pipeline has counted exactly the legacy database's events, and stays there a moment.
    static func waitUntilCountedLikeLegacy(_ harness: ConsumerHarness, _ url: String) async throws {
        try await harness.waitUntilCounted(try await Self.legacyEvents(url), timeout: .seconds(60))
    }

    @Test func followingALiveLegacyDatabaseCountsEveryChangeOnceThroughARestartAndParityAgrees() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            try await LegacyDatabase.with { url in
                let checkpoint = FileManager.default.temporaryDirectory.appendingPathComponent("follow-\(UUID())").path
                defer { try? FileManager.default.removeItem(atPath: checkpoint) }
                let arguments = ["backfill", "--follow", "--checkpoint", checkpoint, "--poll-interval-ms", "100"]

                try await harness.withConsumers {
                    let first = try Producer(arguments, legacyURL: url, exchange: harness.topology.exchange)
                    try await Self.waitUntilCountedLikeLegacy(harness, url)
                    let historyEvents = try await Self.legacyEvents(url)
                    // A new member who checks in; a token issued now and used a few polls later, within the window.
                    try await Self.legacy(
                        url,
                        """
                        INSERT INTO users (id, first_name, last_name, joined_at) VALUES (9001, 'Ada', 'New', now());
                        INSERT INTO tokens (id, user_id, token, created_at, used_at)
                            VALUES (90001, 9001, '111111', now(), now());
                        INSERT INTO tokens (id, user_id, token, created_at) VALUES (90002, 9001, '222222', now());
                        """)
                    try await Self.waitUntilCountedLikeLegacy(harness, url)
                    try await Self.legacy(url, "UPDATE tokens SET used_at = now() WHERE id = 90002")
                    try await Self.waitUntilCountedLikeLegacy(harness, url)

                    // A token whose transaction commits late: its id is below ids committed and followed meanwhile.
                    let late = try await PostgresConnection.connect(
                        PostgresConfiguration(url: url, variable: "LEGACY_DATABASE_URL"), logger: TestServers.logger)
                    try await late.execute(
                        "BEGIN; INSERT INTO tokens (id, user_id, token, created_at, used_at) VALUES (90003, 9001, '333333', now(), now())"
                    )
                    try await Self.legacy(
                        url,
                        "INSERT INTO tokens (id, user_id, token, created_at, used_at) VALUES (90004, 1, '444444', now(), now())"
                    )
                    // Counted: the follower read past the late token's id.
                    try await Self.waitUntilCountedLikeLegacy(harness, url)
                    try await late.execute("COMMIT")
                    await late.close()
                    try await Self.waitUntilCountedLikeLegacy(harness, url)

                    // Killed mid-way, changes while it is down, and a restart from its checkpoint.
                    kill(first.process.processIdentifier, SIGKILL)
                    _ = try await first.finish()
                    try await Self.legacy(
                        url,
                        """
                        INSERT INTO tokens (id, user_id, token, created_at, used_at) VALUES (90005, 2, '555555', now(), now());
                        INSERT INTO users (id, first_name, last_name, joined_at) VALUES (9002, 'Bo', 'Later', now());
                        """)
                    let second = try Producer(arguments, legacyURL: url, exchange: harness.topology.exchange)
                    try await Self.waitUntilCountedLikeLegacy(harness, url)
                    kill(second.process.processIdentifier, SIGTERM)
                    let (status, line) = try await second.finish()
                    #expect(status == 0)
                    // The restart published what its window holds again, not the history.
                    let published = try #require(
                        line.split(separator: " ").dropFirst().first.flatMap { Int($0) }, "\(line)")
                    #expect(published < historyEvents, "\(line)")
                    #expect(line.hasSuffix("published \(published) events, \(published) confirmed\n"), "\(line)")
                }
                let counted = try await harness.withDatabase {
                    try await $0.query("SELECT count(*) FROM counted_events")[0].int(0)
                }
                #expect(counted == (try await Self.legacyEvents(url)))

                try await Self.withAPI(harness) { port in
                    let today = String(Timestamp.now.rfc3339.prefix(10))
                    let agreed = try await Self.parity(url, port: port, to: today)
                    #expect(agreed.status == 0, "\(agreed.output)")
                    #expect(agreed.output.hasPrefix("all "), "\(agreed.output)")
                    // Behind the pipeline's back: a used token moved to the day before.
                    try await Self.legacy(
                        url,
                        "UPDATE tokens SET created_at = created_at - interval '1 day' WHERE id = 90001")
                    let differed = try await Self.parity(url, port: port, to: today)
                    #expect(differed.status == 1)
                    let yesterday = String(Timestamp.now.adding(seconds: -86_400).rfc3339.prefix(10))
                    #expect(differed.output.contains("\(yesterday)\t"), "\(differed.output)")
                    #expect(differed.output.contains("\(today)\t"), "\(differed.output)")
                }
            }
        }
    }

    /// Runs `body` with the report API over the harness's rollups, live on a port.
    static func withAPI(_ harness: ConsumerHarness, _ body: @Sendable (Int) async throws -> Void) async throws {
        let pool = PostgresPool(
            configuration: try TestServers.readerDatabase(schema: harness.schema), maxConnections: 4,
            logger: TestServers.logger)
        let router = ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones, cacheLifetime: .zero,
            registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
        try await Application(router: router).test(.live) { client in try await body(try #require(client.port)) }
        await pool.close()
    }

    static func parity(_ url: String, port: Int, to: String) async throws -> (status: Int32, output: String) {
        let producer = try Producer(
            ["parity", "--api", "http://127.0.0.1:\(port)", "--to", to], legacyURL: url, exchange: "unused")
        return try await producer.finish()
    }
}
