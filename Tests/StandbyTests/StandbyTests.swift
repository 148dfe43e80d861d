import Basics
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import Testing

/// Reports from the PostgreSQL standby that `scripts/services cluster-up` starts; the standby is paused and stopped,
/// so `scripts/test` runs this suite alone, after the others.
@Suite(.serialized)
struct StandbyTests {

    /// The report API's database settings as `report-api` reads them from the cluster's setting: the primary and
    /// the standby, `prefer-standby`.
    static func clusterReader(schema: String) throws -> PostgresConfiguration {
        try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables([
                "DATABASE_URL": TestServers.variable("CLUSTER_READER_DATABASE_URL"), "DB_SCHEMA": schema,
            ]), applicationName: TestServers.uniqueName("standby"), sessionAttributes: "prefer-standby")
    }

    /// Runs a statement on the standby as the superuser (pausing or resuming its replay).
    static func onStandby(_ sql: String) throws {
        Programs.shell("su postgres -c \"psql -q -p \(try TestServers.variable("STANDBY_PORT")) -c '\(sql)'\"")
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    static func waitUntilStandbyReplays(_ schema: String) async throws {
        let primary = try await PostgresConnection.connect(
            TestServers.database(schema: schema), logger: TestServers.logger)
        let position = try await primary.query("SELECT pg_current_wal_lsn()::text")[0].string(0)
        var standbyConfiguration = try clusterReader(schema: schema)
        standbyConfiguration.options["target_session_attrs"] = "standby"
        let standby = try await PostgresConnection.connect(standbyConfiguration, logger: TestServers.logger)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let replayed = try await standby.query(
                "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", [position])[0].bool(0)
            if replayed { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("the standby did not replay the primary's WAL in 30 s")
    }

    @Test func reportsComeFromTheStandbyAndAnAnswerBehindTheSignalledFoldIsNotKept() async throws {
        try await Schemas.withMigrated { schema in
            try await Self.waitUntilStandbyReplays(schema)
            let reader = try Self.clusterReader(schema: schema)
            let readerConnection = try await PostgresConnection.connect(reader, logger: TestServers.logger)
            #expect(try await readerConnection.query("SELECT pg_is_in_recovery()")[0].bool(0))
            try await ReportAPIFixture.withSignalledRouter(schema: schema, reader: reader, signalDatabase: reader) {
                router, signal, heard in
                try await Application(router: router).test(.router) { client in
                    #expect(try await ReportAPIFixture.get(client, "/api/reports/summary").headers[.eTag] == #""0""#)

                    // The standby replays nothing for a while: the fold is signalled from the primary, and the answer,
                    // read from the standby, is still the version before it, without the fold's Last-Modified.
                    try Self.onStandby("SELECT pg_wal_replay_pause()")
                    defer { try? Self.onStandby("SELECT pg_wal_replay_resume()") }
                    try await Schemas.fold(user: 7, into: schema)
                    let folded = await signal.generation(after: heard)
                    #expect(signal.primaryVersion == 1)
                    let behind = try await ReportAPIFixture.get(client, "/api/reports/summary")
                    #expect(behind.body.hasPrefix(#"{"checkins":0,"#))
                    #expect(behind.headers[.eTag] == #""0""#)
                    #expect(behind.headers[.lastModified] == nil)

                    // Replayed, with no further fold or signal: the answer behind was not kept for the fold's generation.
                    try Self.onStandby("SELECT pg_wal_replay_resume()")
                    try await Self.waitUntilStandbyReplays(schema)
                    let caughtUp = try await ReportAPIFixture.get(client, "/api/reports/summary")
                    #expect(signal.generation == folded)
                    #expect(caughtUp.body.hasPrefix(#"{"checkins":1,"users":1,"#))
                    #expect(caughtUp.headers[.eTag] == #""1""#)
                    let primary = try await PostgresConnection.connect(
                        TestServers.database(schema: schema), logger: TestServers.logger)
                    let lastFolded = try await primary.query("SELECT max(last_folded_at) FROM fold_totals")[0]
                    #expect(caughtUp.headers[.lastModified] == (try lastFolded.optionalTimestamp(0))?.httpDate)
                    #expect(try await ReportAPIFixture.get(client, "/api/reports/summary").body == caughtUp.body)
                }
            }
        }
    }

    @Test func stoppingTheStandbySendsTheAPIToThePrimaryWithoutARestart() async throws {
        try await Schemas.withMigrated { schema in
            try await Schemas.fold(user: 3, into: schema)
            try await Self.waitUntilStandbyReplays(schema)
            let pool = PostgresPool(
                configuration: try Self.clusterReader(schema: schema), maxConnections: 2, logger: TestServers.logger)
            let router = ReportAPIApp.buildRouter(
                repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
                registry: PrometheusCollectorRegistry(),
                logger: TestServers.logger)
            @Sendable func inRecovery() async throws -> Bool {
                try await pool.withConnection { try await $0.query("SELECT pg_is_in_recovery()")[0].bool(0) }
            }
            try await Application(router: router).test(.router) { client in
                let fromStandby = try await ReportAPIFixture.get(client, "/api/reports/summary")
                #expect(fromStandby.status == 200)
                #expect(try await inRecovery())

                Programs.shell("pg_ctlcluster $(ls /usr/lib/postgresql | sort -n | tail -n 1) standby stop -m fast")
                defer { TestServers.startStoppedNodes() }
                // The pool's connections to the standby break on their next use, and the request runs again on a
                // connection opened on the primary: no answer fails.
                for _ in 0..<3 {
                    let answer = try await ReportAPIFixture.get(client, "/api/reports/summary")
                    #expect(answer.status == 200)
                    #expect(answer.body == fromStandby.body)
                }
                #expect(try await inRecovery() == false)
            }
        }
    }
}
