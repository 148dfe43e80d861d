import Basics
import ConsumerCore
import Foundation
import IntegrationSupport
import Pipeline
import PostgresClient
import Testing

@Suite("The fold statements against PostgreSQL")
struct RollupWriterTests {
    @Test func aBatchCountsOnlyTheIdsNeverCountedBefore() async throws {
        try await Schemas.withName("writer") { schema in
            let database = try TestServers.database(schema: schema)
            try await PostgresConnection.withConnection(database, logger: TestServers.logger) { connection in
                _ = try await Migrator(schema: schema, zones: ["UTC"]).run(on: connection, logger: TestServers.logger)
                let day = Timestamp(year: 2023, month: 2, day: 8, hour: 9)
                let events = (0..<8).map {
                    Event(
                        id: UUID(), kind: .checkin, userID: Int32(1 + $0 % 2),
                        occurredAt: day.adding(seconds: Int64($0) * 60))
                }
                let writer = RollupWriter(totalsSlot: 0)
                let fold = { (batch: [Event]) in
                    try await connection.withTransaction { try writer.fold(batch, on: $0) }
                }

                #expect(try await fold(Array(events[0..<3])) == FoldResult(counted: 3, duplicates: 0), "all new")
                #expect(try await fold(Array(events[0..<3])) == FoldResult(counted: 0, duplicates: 3), "none new")
                #expect(
                    try await fold(Array(events[1..<6]) + [events[4]]) == FoldResult(counted: 3, duplicates: 3),
                    "some new, one repeated within the batch")
                #expect(
                    try await fold(Array(events[6..<8]) + [events[6]]) == FoldResult(counted: 2, duplicates: 1),
                    "all new, one repeated within the batch")

                let (daily, hourly) = try await connection.localDays()
                #expect(daily == ["UTC 2023-02-08 default": 8])
                #expect(hourly == ["UTC 2023-02-08 9 default": 8])
                let users = try await connection.query("SELECT user_id, visits FROM user_activity ORDER BY 1")
                #expect(try users.rows.map { [try $0.int(0), try $0.int(1)] } == [[1, 4], [2, 4]])
                let totals = try await connection.query("SELECT checkins, users FROM fold_totals")[0]
                #expect(try [totals.int(0), totals.int(1)] == [8, 2])
            }
        }
    }
}
