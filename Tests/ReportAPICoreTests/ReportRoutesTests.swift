import Basics
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Pipeline
import Prometheus
import ReportAPICore
import Testing

/// The report routes over the in-memory repository: no server. What they parse, answer and refuse; the reports'
/// numbers against PostgreSQL are the integration tests'.
@Suite("The report routes, in memory")
struct ReportRoutesTests {
    /// Check-ins of members 1 to 3 on 2024-05-01 and 2024-05-03 (UTC), one of them twice, and a join.
    static func repository() -> MemoryReportRepository {
        let repository = MemoryReportRepository(foldedZones: ["UTC"])
        let at = { (day: Int, hour: Int) in Timestamp(year: 2024, month: 5, day: day, hour: hour) }
        repository.fold(
            [
                Event(id: UUID(), kind: .checkin, userID: 1, occurredAt: at(1, 9), spaceID: "hq"),
                Event(id: UUID(), kind: .checkin, userID: 2, occurredAt: at(1, 22), spaceID: "annex"),
                Event(id: UUID(), kind: .checkin, userID: 1, occurredAt: at(3, 8)),
                Event(id: UUID(), kind: .checkin, userID: 3, occurredAt: at(3, 8)),
                Event(id: UUID(), kind: .checkin, userID: 1, occurredAt: at(3, 17)),
                Event(id: UUID(), kind: .userJoined, userID: 1, occurredAt: Timestamp(year: 2024, month: 4, day: 2)),
            ], at: Timestamp(year: 2024, month: 5, day: 4, hour: 1))
        return repository
    }

    static func router(_ repository: MemoryReportRepository = Self.repository(), tokens: APITokens? = nil)
        -> Router<ReportRequestContext>
    {
        ReportAPIApp.buildRouter(
            repository: repository, zones: ReportZones(folded: ["UTC"], defaultZone: "UTC"),
            cacheLifetime: .seconds(60), tokens: tokens, registry: PrometheusCollectorRegistry(),
            logger: Logger(label: "test"))
    }

    static func get(_ router: Router<ReportRequestContext>, _ uri: String, _ headers: HTTPFields = [:])
        async throws -> (status: Int, body: String, headers: HTTPFields)
    {
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: uri, method: .get, headers: headers) {
                (Int($0.status.code), String(buffer: $0.body), $0.headers)
            }
        }
    }

    @Test func theReportsAnswerTheirShapesInJSONAndCSV() async throws {
        let router = Self.router()
        #expect(try await Self.get(router, "/api/reports/daily_usage").body == #"{"2024-05-01":2,"2024-05-03":3}"#)
        #expect(
            try await Self.get(router, "/api/reports/daily_usage?fill=zero&format=csv").body
                == "day,visits\r\n2024-05-01,2\r\n2024-05-02,0\r\n2024-05-03,3\r\n")
        #expect(
            try await Self.get(router, "/api/reports/daily_usage?tz=Asia/Kolkata").body
                == #"{"2024-05-01":1,"2024-05-02":1,"2024-05-03":3}"#, "22:00Z is the next day in Kolkata")
        #expect(
            try await Self.get(router, "/api/reports/unique_visitors?fill=zero").body
                == #"{"days":{"2024-05-01":2,"2024-05-02":0,"2024-05-03":2},"total":3}"#)
        #expect(
            try await Self.get(router, "/api/reports/top_members?from=2024-05-02&limit=2").body
                == #"[{"user_id":1,"visits":2,"joined_at":"2024-04-02T00:00:00.000000Z"},"#
                + #"{"user_id":3,"visits":1,"joined_at":null}]"#)
        #expect(
            try await Self.get(router, "/api/reports/user_visits?limit=1").body
                == #"{"1":{"joined_at":"2024-04-02 00:00:00","visits":3}}"#)
        #expect(
            try await Self.get(router, "/api/reports/summary").body
                == #"{"checkins":5,"users":3,"first_checkin_at":"2024-05-01T09:00:00.000000Z","#
                + #""last_checkin_at":"2024-05-03T17:00:00.000000Z","last_folded_at":"2024-05-04T01:00:00.000000Z"}"#)
        #expect(
            try await Self.get(router, "/api/reports/filters").body
                == #"{"default_zone":"UTC","zones":["UTC"],"spaces":["annex","default","hq"]}"#)
    }

    @Test func answersCarryTheirVersionAndAnUnchangedOneAnswers304() async throws {
        let repository = Self.repository()
        let router = Self.router(repository)
        let first = try await Self.get(router, "/api/reports/daily_usage")
        #expect(first.headers[.eTag] == #""1""#)
        #expect(first.headers[.lastModified] == "Sat, 04 May 2024 01:00:00 GMT")
        #expect(try await Self.get(router, "/api/reports/daily_usage", [.ifNoneMatch: #""1""#]).status == 304)
        repository.fold([
            Event(id: UUID(), kind: .checkin, userID: 4, occurredAt: Timestamp(year: 2024, month: 5, day: 3))
        ])
        // Without the signal of folds, the cache keeps the answer for its lifetime: the version it shows is its own.
        #expect(try await Self.get(router, "/api/reports/daily_usage").headers[.eTag] == #""1""#)
        #expect(
            try await Self.get(router, "/api/reports/daily_usage?tz=UTC&from=2024-01-01").body.contains(
                #""2024-05-03":4"#))
    }

    @Test(
        "a bad query answers 400 naming its parameter",
        arguments: [
            ("/api/reports/daily_usage?from=2024-02-30", #"from must be a date YYYY-MM-DD, got \"2024-02-30\""#),
            ("/api/reports/daily_usage?tz=IST", #"tz must be an IANA time zone such as Asia/Kolkata, got \"IST\""#),
            ("/api/reports/daily_usage?from=2024-05-02&to=2024-05-01", "from (2024-05-02) is after to (2024-05-01)"),
            ("/api/reports/hourly_usage?day=1", #"unknown query parameter \"day\" (known: fill, from, space, to, tz)"#),
            ("/api/reports/daily_usage?fill=some", #"fill must be zero, got \"some\""#),
            ("/api/reports/summary?format=AAA", #"format must be json or csv, got \"AAA\""#),
            ("/api/reports/top_members?limit=0", #"limit must be an integer from 1 to 1000, got \"0\""#),
            ("/api/reports/user_visits?after=-1", #"after must be a user id from 0 to 2147483647, got \"-1\""#),
            ("/api/reports/filters?format=csv", #"unknown query parameter \"format\" (this path takes none)"#),
        ])
    func aBadQuery(_ uri: String, _ message: String) async throws {
        let answer = try await Self.get(Self.router(), uri)
        #expect(answer.status == 400)
        #expect(answer.body == #"{"error":""# + message + #""}"#)
    }

    @Test func theTokenIsDecidedOnTheRouteWhateverThePathsSpelling() async throws {
        // printf %s s3cret-token | sha256sum
        let digest = "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e"
        var bytes: [UInt8] = []
        var index = digest.startIndex
        while index < digest.endIndex {
            let next = digest.index(index, offsetBy: 2)
            bytes.append(UInt8(digest[index..<next], radix: 16) ?? 0)
            index = next
        }
        let router = Self.router(tokens: APITokens(digests: [bytes]))
        for path in [
            "//api/reports/user_visits", "/api//reports/summary", "/api/reports/summary/", "///api/reports/daily_usage",
        ] {
            #expect(try await Self.get(router, path).status == 401, "\(path)")
            #expect(
                try await Self.get(router, path, [.authorization: "Bearer s3cret-token"]).status == 200, "\(path)")
        }
        for open in ["/health_check", "/openapi.json", "/", "//health_check"] {
            #expect(try await Self.get(router, open).status == 200, "\(open)")
        }
        #expect(try await Self.get(router, "/API/reports/summary").status == 404)
    }

    @Test func aStoreThatIsDownAnswers503WhileLivenessStaysUp() async throws {
        let repository = Self.repository()
        repository.setDown(true)
        let router = Self.router(repository)
        let down = try await Self.get(router, "/api/reports/summary")
        #expect(down.status == 503)
        #expect(down.headers[.retryAfter] == "1")
        #expect(down.body == #"{"error":"the database is unavailable; try again shortly"}"#)
        #expect(try await Self.get(router, "/readiness_check").status == 503)
        #expect(try await Self.get(router, "/health_check").status == 200)
        repository.setDown(false)
        #expect(try await Self.get(router, "/api/reports/summary").status == 200)
    }
}
