import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Pipeline
import PostgresClient
import ReportAPICore
import Testing

/// The data's lifecycle: event ids let go past `DEDUP_HORIZON_DAYS` (and events that old refused), the members' rows
/// and days past `MEMBER_RETENTION_DAYS`, and a member erased on request; the visits per day and hour stay exact.
@Suite
struct DataLifecycleTests {
    static let day: Int64 = 86_400_000_000

    /// Check-ins of `users` members, `perDay` a day, one each 20 minutes from 09:00 UTC, on each of the days that lie
    /// `ago` days before today (UTC).
    static func checkins(daysAgo ago: [Int], perDay: Int, users: Int32) -> [Event] {
        let today = Timestamp.now.microsecondsSinceEpoch.floorDivided(by: day).quotient * day
        return ago.flatMap { ago in
            (0..<perDay).map { index in
                Event(
                    id: UUID(), kind: .checkin, userID: Int32(index) % users + 1,
                    occurredAt: Timestamp(
                        microsecondsSinceEpoch: today - Int64(ago) * day + 9 * 3_600_000_000 + Int64(index)
                            * 1_200_000_000),
                    spaceID: index % 2 == 0 ? "hq" : "annex")
            }
        }
    }

    static func count(_ sql: String, _ connection: PostgresConnection) async throws -> Int {
        try await connection.query(sql)[0].int(0)
    }

    /// With a horizon of 30 days, ids of events older than 31 days go (a day's margin for the consumer's clock); the
    /// rollups stay; an event older than the horizon is dead-lettered with a reason naming the setting, even one whose
    /// id was counted before, so that it can never count twice.
    @Test func eventIDsPastTheHorizonGoAndEventsThatOldAreRefused() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let old = Self.checkins(daysAgo: [40, 35], perDay: 30, users: 10)
            let recent = Self.checkins(daysAgo: [20, 1], perDay: 30, users: 10)
            let database = try await harness.database()
            _ = try await database.withTransaction { try RollupWriter().fold(old + recent, on: $0) }
            let before = try await harness.storedRollups()
            #expect(try await Self.count("SELECT count(*) FROM counted_events", database) == 120)

            let deleted = try await Retention.prune(
                Retention.Horizons(eventIDs: 30), schema: harness.schema, on: database)
            #expect(deleted == ["counted_events": 60])
            #expect(try await Self.count("SELECT count(*) FROM counted_events", database) == 60)
            #expect(try await harness.storedRollups() == before, "the rollups stay as they were")

            try await harness.withConsumers(changing: { $0.rules.dedupHorizonDays = 30 }) {
                try await harness.publish([old[0].jsonBody, recent[0].jsonBody])
                try await harness.waitForDeadLetters(1)
                try await Waiting.until(within: .seconds(10)) {
                    try await harness.readyMessages(in: harness.topology.queue) == 0
                }
            }
            let dead = try await harness.deadLetters()
            #expect(dead.count == 1)
            #expect(dead.first?.body == old[0].jsonBody)
            #expect(
                dead.first?.header("x-rejection-reason")
                    == .string(
                        "occurred_at is more than 30 days ago (DEDUP_HORIZON_DAYS), so its id may no longer be kept and it "
                            + "could not be counted exactly once: raise DEDUP_HORIZON_DAYS to count it"))
            #expect(try await harness.storedRollups() == before, "the recent one was counted before: a duplicate")
        }
    }

    /// With a retention of 30 days, the members' rows, waiting or compacted, and the members' days older than that
    /// go; the visits per day and hour, and the users' totals, stay; unique visitors of the days kept stay exact.
    @Test func membersPastTheirRetentionGoAndTheCountsStay() async throws {
        try await ConsumerHarness.with(zones: ["UTC", "Asia/Kolkata"]) { harness in
            let old = Self.checkins(daysAgo: [45, 40], perDay: 30, users: 12)
            let recent = Self.checkins(daysAgo: [10, 2], perDay: 30, users: 12)
            let database = try await harness.database()
            _ = try await database.withTransaction { try RollupWriter().fold(old, on: $0) }
            try await harness.compactMembers()
            // Some rows compacted, some still waiting for the compactor.
            _ = try await database.withTransaction { try RollupWriter().fold(recent, on: $0) }
            let before = try await harness.storedRollups()
            let router = try ReportAPIFixture.router(schema: harness.schema)
            let recentDays = try await ReportAPIFixture.get(
                router, "/api/reports/unique_visitors?tz=UTC&from=2000-01-01")

            try await Retention.prune(Retention.Horizons(members: 30), schema: harness.schema, on: database)
            let after = try await harness.storedRollups()
            #expect(after.daily == before.daily)
            #expect(after.hourly == before.hourly)
            #expect(after.users == before.users)
            #expect(after.memberVisits == before.memberVisits.filter { $0.value > 0 && Self.isRecent($0.key) })
            #expect(after.memberDays == before.memberDays.filter { Self.isRecent($0.key.split(separator: " ")[1]) })
            #expect(!after.memberDays.isEmpty && after.memberDays.count < before.memberDays.count)
            let (_, kept) = try await ReportAPIFixture.get(
                router, "/api/reports/unique_visitors?tz=UTC&from=2000-01-01")
            let expectedKept = try #require(
                try JSONSerialization.jsonObject(with: Data(recentDays.1.utf8)) as? [String: Any])
            let days = try #require(expectedKept["days"] as? [String: Int]).filter { Self.isRecent($0.key) }
            let body = days.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
            #expect(days.count == 2)
            #expect(kept == "{\"days\":{\(body)},\"total\":12}")
        }
    }

    /// Whether the day or bucket at the start of `key` lies within the last 30 days.
    static func isRecent(_ key: some StringProtocol) -> Bool {
        let today = LocalDate(dayNumber: Int(Timestamp.now.microsecondsSinceEpoch.floorDivided(by: day).quotient))
        return String(key.prefix(10)) >= LocalDate(dayNumber: today.dayNumber - 30).description
    }

    /// `consumer forget-member`: the member's line of user_visits is gone, and so is every row naming them, while the
    /// day and hour counts, unique visitors in every zone and the other members' reports stay exactly as they were.
    @Test func aForgottenMemberLeavesNoTraceAndTheCountsStay() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let events = workload(events: 2_000, users: 40, seed: 71)
            let database = try await harness.database()
            _ = try await database.withTransaction { try RollupWriter().fold(Array(events[..<1_000]), on: $0) }
            try await harness.compactMembers()
            _ = try await database.withTransaction { try RollupWriter().fold(Array(events[1_000...]), on: $0) }
            let forgotten: Int32 = 7
            let expected = try ExpectedRollups(events: events, zones: ["UTC"])
            let compacted = try await Self.count(
                """
                SELECT count(*) FROM member_visits
                WHERE user_id = \(forgotten) AND appended_by < (SELECT compacted_below FROM member_compaction)
                """, database)
            let waiting = try await Self.count(
                """
                SELECT count(*) FROM member_visits
                WHERE user_id = \(forgotten) AND appended_by >= (SELECT compacted_below FROM member_compaction)
                """, database)
            #expect(compacted > 0 && waiting > 0)
            let router = try ReportAPIFixture.router(schema: harness.schema)
            let queries = [
                "daily_usage?tz=UTC", "hourly_usage?tz=Asia/Kathmandu", "unique_visitors?tz=UTC",
                "unique_visitors?tz=Asia/Kathmandu&space=hq", "summary",
            ]
            var answers: [String] = []
            for query in queries { answers.append(try await ReportAPIFixture.get(router, "/api/reports/" + query).1) }

            let report = try await MemberErasure(schema: harness.schema).forget(forgotten, on: database)
            #expect(
                report
                    == MemberErasure.Report(
                        userActivity: 1, memberRows: compacted, waitingRows: waiting, numbered: true)
            )
            for (query, answer) in zip(queries, answers) {
                #expect(try await ReportAPIFixture.get(router, "/api/reports/" + query).1 == answer, "\(query)")
            }
            try await harness.compactMembers()
            #expect(try await ReportAPIFixture.get(router, "/api/reports/unique_visitors?tz=UTC").1 == answers[2])
            for table in ["user_activity", "member_visits", "member_ordinals"] {
                #expect(
                    try await Self.count("SELECT count(*) FROM \(table) WHERE user_id = \(forgotten)", database) == 0,
                    "\(table)")
            }
            let users = try await ReportAPIFixture.get(router, "/api/reports/user_visits").1
            #expect(!users.contains(#""\#(forgotten)":"#))
            let top = try await ReportAPIFixture.get(
                router, "/api/reports/top_members?tz=UTC&from=2023-01-01&limit=1000"
            ).1
            #expect(!top.contains(#""user_id":\#(forgotten),"#))
            let others = expected.users.filter { $0.key != forgotten && $0.value.visits > 0 }.count
            #expect(top.components(separatedBy: "user_id").count - 1 == others)
            #expect(
                try await MemberErasure(schema: harness.schema).forget(forgotten, on: database).foundAnything == false)
        }
    }
}
