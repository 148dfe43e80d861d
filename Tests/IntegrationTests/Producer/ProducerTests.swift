import AMQPClient
import Foundation
import IntegrationSupport
import Logging
import Pipeline
import PostgresClient
import ProducerCore
import TestSupport
import Testing

@Suite("The producer against RabbitMQ and PostgreSQL")
struct ProducerTests {
    static func backfill(_ legacy: PostgresConfiguration, into harness: ConsumerHarness) async throws
        -> EventPublisher.Counts
    {
        let publisher = EventPublisher(
            configuration: try TestServers.amqp(), exchange: harness.topology.exchange, logger: TestServers.logger)
        var counts = EventPublisher.Counts()
        try await LegacyBackfill(legacy: legacy).events(logger: TestServers.logger, total: { _ in }) { events in
            counts += await publisher.publish(events.map(publisher.message(for:)))
        }
        await publisher.close()
        return counts
    }

    @Test func aBackfillOfTheSeedDataGivesTheFlaskDailyUsageDayByDayAndTwiceCountsOnce() async throws {
        try await LegacyDatabase.with { url in
            let legacy = try PostgresConfiguration(url: url, variable: "LEGACY_DATABASE_URL")
            try await ConsumerHarness.with(zones: ["UTC"]) { harness in
                try await PostgresConnection.withConnection(legacy, logger: TestServers.logger) { source in
                    let users = try await source.query("SELECT count(*) FROM users")[0].int(0)
                    let used = try await source.query("SELECT count(*) FROM tokens WHERE used_at IS NOT NULL")[0].int(0)
                    #expect(users == 1_000)

                    try await harness.withConsumers {
                        let first = try await Self.backfill(legacy, into: harness)
                        #expect(first == EventPublisher.Counts(published: users + used, confirmed: users + used))
                        try await harness.waitUntilDrained(counted: users + used)
                        let second = try await Self.backfill(legacy, into: harness)
                        #expect(second.confirmed == users + used)
                        try await harness.waitUntilDrained(counted: users + used)
                    }
                    let counted = try await harness.database().query("SELECT count(*) FROM counted_events")[0].int(0)
                    #expect(counted == users + used, "the second backfill counted nothing")

                    // The Flask service's daily_usage: used tokens by the date of created_at.
                    let flask = try await source.query(
                        "SELECT date(created_at)::text, count(*) FROM tokens WHERE used_at IS NOT NULL GROUP BY 1 ORDER BY 1"
                    )
                    let expected =
                        "{" + (try flask.rows.map { "\"\(try $0.string(0))\":\(try $0.int(1))" }).joined(separator: ",")
                        + "}"
                    let router = try ReportAPIFixture.router(schema: harness.schema)
                    let daily = try await ReportAPIFixture.get(router, "/api/reports/daily_usage")
                    #expect(daily.1 == expected)

                    // joined_at comes back in the legacy text form, from the users table.
                    let joined = try await source.query(
                        "SELECT u.id, u.joined_at::text FROM users u WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id "
                            + "AND t.used_at IS NOT NULL) ORDER BY u.id LIMIT 1")[0]
                    let page = try await ReportAPIFixture.get(router, "/api/reports/user_visits?limit=1")
                    #expect(page.1.hasPrefix("{\"\(try joined.int(0))\":{\"joined_at\":\"\(try joined.string(1))\","))
                }
            }
        }
    }

    /// Runs the `producer` executable; returns its exit status and its output.
    static func producer(_ arguments: [String], exchange: String) throws -> (Int32, String, String) {
        try Programs.run("producer", arguments, environment: ["EXCHANGE": exchange, "LOG_LEVEL": "error"])
    }

    @Test func theCommandsReportWhatWasConfirmedAndRefuseBadLines() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let exchange = harness.topology.exchange
            let one = try Self.producer(
                ["publish", "--user-id", "42", "--at", "2023-02-08T08:29:58+01:00", "--space", "hq"], exchange: exchange
            )
            #expect(one.0 == 0)
            #expect(one.1 == "published 1 events, 1 confirmed\n")

            let refused = try Self.producer(["publish", "--user-id", "0"], exchange: exchange)
            #expect(refused.0 != 0)
            #expect(refused.2.contains("user_id must be an integer from 1 to 2147483647"))

            let file = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(UUID()).jsonl")
            let valid = { (user: Int) in
                #"{"event_id":"\#(UUID())","type":"checkin","user_id":\#(user),"occurred_at":"2023-02-09T10:00:00Z"}"#
            }
            try (valid(1) + "\n" + #"{"type":"checkin"}"# + "\n\n" + valid(2) + "\n").write(
                to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            let replay = try Self.producer(["replay", file.path], exchange: exchange)
            #expect(replay.0 == 1, "a refused line fails the run")
            #expect(replay.1 == "published 2 events, 2 confirmed, 1 refused\n")
            #expect(replay.2 == "line 2: event_id is missing\n")
            let raw = try Self.producer(["replay", "--raw", file.path], exchange: exchange)
            #expect(raw.0 == 0)
            #expect(raw.1 == "published 3 events, 3 confirmed\n")

            try await harness.withConsumers {
                try await harness.waitUntilDrained(counted: 3)
            }
            #expect(try await harness.storedRollups().checkins == 3)
            #expect(try await harness.deadLetters().count == 1, "the raw line went to the dead letters")

            let amqp = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await amqp.declareExchange(exchange + ".unbound", type: "topic")
            let lost = try Self.producer(["publish", "--user-id", "7"], exchange: exchange + ".unbound")
            #expect(lost.0 != 0, "a returned message is not confirmed")
            #expect(lost.1 == "published 1 events, 0 confirmed\n")
            try await amqp.deleteExchange(exchange + ".unbound")
            await amqp.close()
        }
    }

    /// `producer backfill` takes the legacy database's URL from the environment: while it runs (held by a lock on the
    /// legacy tokens), its arguments, as any user of the machine reads them in /proc, hold no password.
    @Test func aBackfillKeepsTheLegacyPasswordOutOfItsArguments() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            try await LegacyDatabase.with { url in
                let legacy = try PostgresConfiguration(url: url, variable: "DATABASE_URL")
                let password = try #require(legacy.password)
                let locker = try await PostgresConnection.connect(legacy, logger: TestServers.logger)
                try await locker.execute("BEGIN; LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")
                let process = Process()
                process.executableURL = Programs.executable("producer")
                process.arguments = ["backfill"]
                process.environment = ProcessInfo.processInfo.environment.merging([
                    "LEGACY_DATABASE_URL": url, "EXCHANGE": harness.topology.exchange, "LOG_LEVEL": "error",
                ]) { _, given in given }
                let output = Pipe()
                process.standardOutput = output
                try process.run()
                try await Schemas.waitForALockWait(on: "tokens", in: legacy)
                let arguments = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(process.processIdentifier)/cmdline"))
                let words = arguments.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                #expect(words.dropFirst() == ["backfill"])
                #expect(!words.joined(separator: " ").contains(password))
                try await locker.execute("ROLLBACK")
                try await offThePool { process.waitUntilExit() }
                #expect(process.terminationStatus == 0)
                let eventsQuery =
                    "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM tokens WHERE used_at IS NOT NULL)"
                let events = try await locker.query(eventsQuery)[0].int(0)
                let line = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(line.hasSuffix("published \(events) events, \(events) confirmed\n"), "\(line)")
            }
        }
    }
}
