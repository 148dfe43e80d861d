import Basics
import ConsumerCore
import Foundation
import IntegrationSupport
import Pipeline
import Testing

@Suite("The consumer against RabbitMQ and PostgreSQL")
struct ConsumerTests {
    @Test(
        "duplicates, late and out-of-order events fold into exact rollups, whatever the folds in flight",
        arguments: [1, 2, 3])
    func foldsDuplicatesLateAndOutOfOrderEventsIntoExactRollups(foldConnections: Int) async throws {
        try await ConsumerHarness.with { harness in
            let events = workload(events: 3_000, users: 150, seed: 1)
            // The first two thousand arrive first; then the rest, late, with every tenth event again and twenty with
            // the same id but another extra field: each id counts once.
            let early = events[..<2_000].map(\.jsonBody)
            var late = events[2_000...].map(\.jsonBody)
            late += events.enumerated().filter { $0.offset % 10 == 0 }.map(\.element.jsonBody)
            late += events.prefix(20).map { $0.jsonBody.dropLast() + Array(#","note":"twin"}"#.utf8) }

            try await harness.withConsumers(foldConnections: foldConnections) {
                try await harness.publish(early)
                try await harness.waitUntilCounted(2_000)
                try await harness.publish(late)
                try await harness.waitUntilDrained(counted: events.count)
            }
            let expected = try ExpectedRollups(events: events, zones: harness.zones)
            let stored = try await harness.storedRollups()
            #expect(stored.checkins == events.filter { $0.kind == .checkin }.count)
            #expect(stored.daily == expected.daily)
            #expect(stored.hourly == expected.hourly)
            #expect(stored.quarterHours == expected.quarterHours)
            #expect(stored.users == expected.users)
            #expect(stored == expected)
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0)
            #expect(try await harness.deadLetters().isEmpty)
            let lastFolded = try await harness.database().query(
                "SELECT count(*) FROM fold_totals WHERE last_folded_at IS NOT NULL")
            #expect(try lastFolded[0].int(0) >= 1)
        }
    }

    @Test func aPrefetchWindowTooSmallForAThirdBatchAcknowledgesTheOldestBeforeReceiving() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 2_000, users: 100, seed: 7)
            // Room for two and a half batches of 200 with two folds in flight: a third batch, received before the
            // oldest is acknowledged, could only be half delivered and would wait out the batch delay, a minute here,
            // for the rest. The stream's last batch may be partial and wait out the delay by right: a full window
            // cuts a batch short when the newer of two folds commits first, which a busy machine makes happen.
            try await harness.withConsumers(
                foldConnections: 2,
                changing: {
                    $0.prefetch = 500
                    $0.batchMaxDelay = .seconds(60)
                }
            ) {
                try await harness.publish(events.map(\.jsonBody))
                try await harness.waitUntilCounted(events.count - 199, timeout: .seconds(30))
            }
            // Batches are cut in the order of arrival, so what was counted is the events' first ones, and the rest
            // went back to the queue when the consumer stopped.
            let counted = try await harness.withDatabase {
                try await $0.query("SELECT count(*) FROM counted_events")[0].int(0)
            }
            #expect(
                try await harness.storedRollups()
                    == ExpectedRollups(events: Array(events.prefix(counted)), zones: harness.zones))
            let left = events.count - counted
            try await Waiting.until(within: .seconds(10)) {
                try await harness.readyMessages(in: harness.topology.queue) == left
            }
            #expect(try await harness.readyMessages(in: harness.topology.queue) == left)
        }
    }

    /// The folds that counted anything: the rollups' version.
    static func folds(_ harness: ConsumerHarness) async throws -> Int {
        try await harness.withDatabase {
            try await $0.query("SELECT coalesce(sum(folds), 0) FROM fold_totals")[0].int(0)
        }
    }

    @Test func aLoneCheckInIsFoldedAsItArrivesNotWhenABatchFills() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 3, users: 3, seed: 11)
            // Batches of up to 4000 with the default settings: each check-in, alone in the queue, is its own batch, folded
            // as soon as it arrives; a rule that waited for a batch to fill would not count the first two before the third.
            try await harness.withConsumers(batchSize: 4000) {
                for (index, event) in events.enumerated() {
                    try await harness.publish([event.jsonBody])
                    try await harness.waitUntilCounted(index + 1, timeout: .seconds(30))
                }
            }
            #expect(try await Self.folds(harness) == 3)
            #expect(try await harness.storedRollups() == ExpectedRollups(events: events, zones: harness.zones))
        }
    }

    @Test func aBacklogIsFoldedInBatchesOfManyAndAcknowledgedInOrder() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 4_000, users: 300, seed: 12)
            // Queued before the consumer starts: the first batches take what has arrived when a connection is free, the
            // rest arrive while folds run and fill theirs. Twenty batches of 200 at best; one per event would be 4000.
            // How full the batches get depends on how fast the broker sends against how fast the folds commit, which a
            // machine busy with other tests decides (CI once saw 106 folds): at least ten events a fold on average.
            try await harness.publish(events.map(\.jsonBody))
            try await harness.withConsumers(batchSize: 200, foldConnections: 2) {
                try await harness.waitUntilDrained(counted: events.count, timeout: .seconds(60))
            }
            let folds = try await Self.folds(harness)
            #expect(folds >= 20 && folds <= 400, "\(folds) folds")
            #expect(try await harness.storedRollups() == ExpectedRollups(events: events, zones: harness.zones))
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0)
        }
    }

    @Test func aNewYorkDayOfDaylightSavingHas23HoursOfRows() async throws {
        try await ConsumerHarness.with(zones: ["America/New_York"]) { harness in
            // One check-in at the start of every UTC hour of 2023-03-12 local (05:00Z to 03:00Z the next day).
            let start = Timestamp(year: 2023, month: 3, day: 12, hour: 5)
            let events = (0..<23).map {
                Event(id: UUID(), kind: .checkin, userID: 1, occurredAt: start.adding(seconds: Int64($0) * 3600))
            }
            try await harness.withConsumers {
                try await harness.publish(events.map(\.jsonBody))
                try await harness.waitUntilCounted(23)
            }
            let connection = try await harness.database()
            let (daily, hourly) = try await connection.localDays()
            #expect(daily == ["America/New_York 2023-03-12 default": 23])
            let hours = hourly.keys.map { Int($0.split(separator: " ")[2])! }.sorted()
            #expect(hours == [0, 1] + Array(3...23), "02:00 does not exist that day")
            #expect(hourly.values.allSatisfy { $0 == 1 })
        }
    }

    @Test func everyKindOfBadMessageIsDeadLetteredWithItsReasonAndCountsNothing() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let valid = Event(
                id: UUID(), kind: .checkin, userID: 5, occurredAt: Timestamp(year: 2023, month: 2, day: 8),
                spaceID: "hq")
            let id = UUID().uuidString
            let future = Timestamp.now.adding(seconds: 3 * 86_400).rfc3339
            let bad: [(String, [UInt8])] = [
                ("body is not JSON (syntax error at byte 0)", Array("hello".utf8)),
                ("body is not valid UTF-8", [0x7B, 0xFF, 0x7D]),
                ("body is an array, not a JSON object", Array("[]".utf8)),
                (
                    "event_id is missing",
                    Array(#"{"type":"checkin","user_id":1,"occurred_at":"2023-02-08T08:00:00Z"}"#.utf8)
                ),
                (
                    #"type "checkout" is unknown (expected checkin or user_joined)"#,
                    Array(
                        #"{"event_id":"\#(id)","type":"checkout","user_id":1,"occurred_at":"2023-02-08T08:00:00Z"}"#
                            .utf8)
                ),
                (
                    "user_id must be an integer from 1 to 2147483647",
                    Array(
                        #"{"event_id":"\#(id)","type":"checkin","user_id":0,"occurred_at":"2023-02-08T08:00:00Z"}"#.utf8
                    )
                ),
                (
                    "occurred_at is more than 86400 s ahead of the consumer's clock",
                    Array(#"{"event_id":"\#(id)","type":"checkin","user_id":1,"occurred_at":"\#(future)"}"#.utf8)
                ),
                (
                    "body is 70000 bytes, more than the 65536 allowed (the dead letter keeps its first 65536)",
                    Array(repeating: UInt8(ascii: " "), count: 70_000)
                ),
            ]
            try await harness.withConsumers {
                try await harness.publish(bad.map(\.1) + [valid.jsonBody], headers: ["x-trace": .string("t-1")])
                try await harness.waitUntilCounted(1)
                let deadline = ContinuousClock.now + .seconds(30)
                while try await harness.readyMessages(in: harness.topology.deadLetterQueue) < bad.count,
                    ContinuousClock.now < deadline
                {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let dead = try await harness.deadLetters()
            #expect(dead.count == bad.count)
            for (reason, body) in bad {
                let letter = dead.first { $0.body == Array(body.prefix(65_536)) }
                #expect(letter?.copiedProperties?.headers?["x-rejection-reason"] == .string(reason))
                #expect(
                    letter?.copiedProperties?.headers?["x-trace"] == .string("t-1"), "the original headers are kept")
                #expect(letter?.copiedProperties?.contentType == "application/json")
                #expect(letter?.routingKey == "checkin")
            }
            let stored = try await harness.storedRollups()
            #expect(stored.checkins == 1)
            #expect(stored.users.keys.sorted() == [5])
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0)
        }
    }

    @Test func anEventTheDatabaseRefusesIsDeadLetteredAloneAndTheRestCount() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let connection = try await harness.database()
            try await connection.execute(
                "ALTER TABLE visits_quarter_hour ADD CONSTRAINT no_poison CHECK (space_id <> 'poison')")
            let start = Timestamp(year: 2023, month: 2, day: 8, hour: 9)
            let events = (0..<10).map {
                Event(
                    id: UUID(), kind: .checkin, userID: 7, occurredAt: start.adding(seconds: Int64($0) * 60),
                    spaceID: $0 == 6 ? "poison" : "hq")
            }
            try await harness.withConsumers {
                try await harness.publish(events.map(\.jsonBody))
                try await harness.waitUntilCounted(9)
                let deadline = ContinuousClock.now + .seconds(30)
                while try await harness.readyMessages(in: harness.topology.deadLetterQueue) < 1,
                    ContinuousClock.now < deadline
                {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let dead = try await harness.deadLetters()
            #expect(dead.map(\.body) == [events[6].jsonBody])
            #expect(
                dead.first?.copiedProperties?.headers?["x-rejection-reason"]
                    == .string(
                        "the database refused the event (PostgreSQL statement failed (SQLSTATE 23514): the statement failed)"
                    ))
            let stored = try await harness.storedRollups()
            #expect(stored.checkins == 9)
            #expect(stored.daily == ["UTC 2023-02-08 hq": 9])
        }
    }

    /// A table dropped under the consumer is no event's fault: the consumer holds the batch, says why, dead-letters
    /// nothing and does not exit (which would hand the delivery back, counted once more), and counts the event once
    /// the table is back.
    @Test func aSchemaChangedUnderTheConsumerHoldsTheBatchAndDeadLettersNothing() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            try await harness.database().execute("DROP TABLE user_activity")
            let event = Event(
                id: UUID(), kind: .checkin, userID: 7, occurredAt: Timestamp(year: 2023, month: 2, day: 8))
            let consumer = try RunningConsumer(harness)
            try await harness.publish([event.jsonBody])
            let failed = "HTTP/1.1 503 Service Unavailable failed: the database failed the batch (SQLSTATE 42P01)"
            try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == failed }
            #expect(try await consumer.readiness() == failed)
            #expect(try await consumer.waiting("other") == 1)
            #expect(consumer.process.isRunning)
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0, "the consumer holds it")

            try await harness.database().execute(
                """
                CREATE TABLE user_activity (
                    user_id integer PRIMARY KEY CHECK (user_id > 0), visits bigint NOT NULL DEFAULT 0,
                    first_visit_at timestamptz, last_visit_at timestamptz, joined_at timestamptz
                )
                """)
            try await harness.waitUntilCounted(1)
            try await Waiting.until(within: .seconds(10)) { try await consumer.readiness() == "HTTP/1.1 200 OK ok" }
            #expect(try await consumer.readiness() == "HTTP/1.1 200 OK ok")
            _ = consumer.stop()
            #expect(consumer.process.terminationStatus == 0)
            #expect(try await harness.deadLetters().isEmpty)
            #expect(try await harness.storedRollups().checkins == 1)
        }
    }

    @Test func threeConsumersOnOneQueueGiveTheRollupsOfOne() async throws {
        try await ConsumerHarness.with { harness in
            let events = workload(events: 4_000, users: 40, seed: 3)
            try await harness.withConsumers(3, batchSize: 50) {
                try await harness.publish(events.map(\.jsonBody) + events.prefix(500).map(\.jsonBody))
                try await harness.waitUntilDrained(counted: events.count)
            }
            #expect(try await harness.storedRollups() == ExpectedRollups(events: events, zones: harness.zones))
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0)
        }
    }

    @Test func aZoneAddedLaterIsFilledAndThenFoldedExactly() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 1_000, users: 30, seed: 4)
            try await harness.withConsumers {
                try await harness.publish(events[..<500].map(\.jsonBody))
                try await harness.waitUntilCounted(500)
                // Migrating while the consumer folds: the fill and the folds must not miss or double a visit.
                async let migration = Migrator(schema: harness.schema, zones: ["UTC", "Asia/Kathmandu"]).run(
                    on: harness.database(), logger: TestServers.logger)
                try await harness.publish(events[500...].map(\.jsonBody))
                _ = try await migration
                try await harness.waitUntilCounted(1_000)
            }
            let expected = try ExpectedRollups(events: events, zones: ["UTC", "Asia/Kathmandu"])
            let stored = try await harness.storedRollups()
            #expect(stored.daily == expected.daily)
            #expect(stored.hourly == expected.hourly)
            // The members' days too: the zone's filled from the rows compacted before the migration, then compacted
            // with each later batch, while compactions ran beside the folds.
            #expect(stored.memberDays == expected.memberDays)
            #expect(stored.memberDays.keys.contains { $0.hasPrefix("Asia/Kathmandu ") })
        }
    }
}
