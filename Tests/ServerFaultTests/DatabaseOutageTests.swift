import ConsumerCore
import Foundation
import IntegrationSupport
import Pipeline
import PostgresClient
import Synchronization
import Testing

/// A database that refuses writes without being down never costs an event its delivery: the consumer (the real
/// program) holds its batch, waits, says why in its readiness probe, its metrics and one log line, and counts every
/// event once when the database takes writes again, never exiting and dead-lettering nothing. The read-only test
/// changes the server's settings, so `scripts/test` runs this suite with the fault tests, alone.
@Suite(.serialized)
struct DatabaseOutageTests {

    /// Publishes `events` at about `rate` a second, from a child task of the caller's, while `body` runs.
    static func publishing<T>(
        _ events: [Event], rate: Int, to harness: ConsumerHarness, while body: () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let chunk = max(1, rate / 10)
                for start in stride(from: 0, to: events.count, by: chunk) {
                    let sent = ContinuousClock.now
                    try await harness.publish(events[start..<min(start + chunk, events.count)].map(\.jsonBody))
                    try await Task.sleep(until: sent + .milliseconds(100))
                }
            }
            let result = try await body()
            try await group.waitForAll()
            return result
        }
    }

    /// `psql` as the server's superuser, for the settings the tests' roles may not change.
    static func asSuperuser(_ sql: String) {
        Programs.shell("runuser -u postgres -- psql -qAt -c \"\(sql)\"")
    }

    @Test func aDatabaseReadOnlyForAMinuteCostsNoEventItsDelivery() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 14_000, users: 400, seed: 61)
            let consumer = try RunningConsumer(harness)
            try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == "HTTP/1.1 200 OK ok" }
            try await Self.publishing(events, rate: 200, to: harness) {
                try await harness.waitUntilCounted(500)
                // Existing sessions take the new default at their next transaction: the consumer's too.
                Self.asSuperuser("ALTER SYSTEM SET default_transaction_read_only = on")
                Self.asSuperuser("SELECT pg_reload_conf()")
                defer {
                    Self.asSuperuser("ALTER SYSTEM RESET default_transaction_read_only")
                    Self.asSuperuser("SELECT pg_reload_conf()")
                }
                let readOnly =
                    "HTTP/1.1 503 Service Unavailable failed: the database refuses writes (read-only) (SQLSTATE 25006)"
                try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == readOnly }
                #expect(try await consumer.readiness() == readOnly)
                #expect(try await consumer.waiting("read_only") == 1)
                try await Task.sleep(for: .seconds(60))
                #expect(consumer.process.isRunning, "the consumer waited, it did not exit")
                #expect(try await consumer.readiness() == readOnly)
            }
            try await harness.waitUntilDrained(counted: events.count, timeout: .seconds(120))
            #expect(try await consumer.readiness() == "HTTP/1.1 200 OK ok")
            #expect(try await consumer.waiting("read_only") == 0)
            #expect(consumer.process.isRunning)
            let lines = consumer.stop()
            #expect(consumer.process.terminationStatus == 0)
            let waits = lines.filter { $0.contains("Folding waits for the database") }
            #expect(waits.count == 1, "one line when the state changed, not one per retry: \(waits)")
            #expect(waits.first?.contains("db.fault=the database refuses writes (read-only) (SQLSTATE 25006)") == true)
            #expect(lines.filter { $0.contains("The database takes the batches again") }.count == 1)
            #expect(try await harness.deadLetters().isEmpty)
            #expect(try await harness.storedRollups() == ExpectedRollups(events: events, zones: harness.zones))
        }
    }

    /// A disk that fills (PostgreSQL's own SQLSTATE 53100, raised as the server does when it cannot extend a file,
    /// since a full disk cannot be made safely on a shared machine) and an administrator who cancels the folds'
    /// statements: each waited out, every event counted once.
    @Test func aFullDiskAndCancelledStatementsAreWaitedOut() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 4_000, users: 200, seed: 67)
            let consumer = try RunningConsumer(harness)
            try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == "HTTP/1.1 200 OK ok" }
            let database = try await harness.database()
            try await Self.publishing(events, rate: 200, to: harness) {
                try await harness.waitUntilCounted(300)
                try await database.execute(
                    """
                    CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
                    END
                    $$;
                    CREATE TRIGGER disk_full BEFORE INSERT ON visits_quarter_hour
                        FOR EACH STATEMENT EXECUTE FUNCTION disk_full();
                    """)
                let full = "HTTP/1.1 503 Service Unavailable failed: the database's disk is full (SQLSTATE 53100)"
                try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == full }
                #expect(try await consumer.readiness() == full)
                #expect(try await consumer.waiting("resources") == 1)
                try await Task.sleep(for: .seconds(10))
                #expect(consumer.process.isRunning)
                try await database.execute("DROP TRIGGER disk_full ON visits_quarter_hour")
                // Then an administrator cancels whatever the consumer's connections run, for a few seconds.
                let observer = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
                let until = ContinuousClock.now + .seconds(5)
                while ContinuousClock.now < until {
                    try await observer.query(
                        """
                        SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                        WHERE application_name = 'consumer' AND state = 'active' AND pid <> pg_backend_pid()
                        """)
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await harness.waitUntilDrained(counted: events.count, timeout: .seconds(60))
            #expect(consumer.process.isRunning)
            #expect(try await consumer.readiness() == "HTTP/1.1 200 OK ok")
            let lines = consumer.stop()
            #expect(lines.contains { $0.contains("db.fault=the database's disk is full (SQLSTATE 53100)") })
            #expect(try await harness.deadLetters().isEmpty)
            #expect(try await harness.storedRollups() == ExpectedRollups(events: events, zones: harness.zones))
        }
    }
}
