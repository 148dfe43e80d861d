import Basics
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Logging
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import TestSupport
import Testing

@Suite("The report API over folded rollups", .serialized)
struct ReportAPITests {

    static func expectedHourly(_ expected: ExpectedRollups, zone: String, from: String, to: String) -> String {
        var hours = [Int](repeating: 0, count: 24)
        for (key, visits) in expected.hourly {
            let parts = key.split(separator: " ").map(String.init)
            guard parts[0] == zone, parts[1] >= from, parts[1] <= to, let hour = Int(parts[2]) else { continue }
            hours[hour] += visits
        }
        return "{" + (0..<24).map { String(format: "\"%02d\":%d", $0, hours[$0]) }.joined(separator: ",") + "}"
    }

    @Test func everyReportMatchesTheFoldedWorkloadExactly() async throws {
        try await ConsumerHarness.with(zones: ReportAPIFixture.zones) { harness in
            let events = workload(events: 3_000, users: 120, seed: 11)
            try await harness.withConsumers {
                try await harness.publish(events.map(\.jsonBody))
                try await harness.waitUntilDrained(counted: events.count)
            }
            let expected = try ExpectedRollups(
                events: events, zones: ReportAPIFixture.zones + ["Asia/Kathmandu", "Australia/Eucla"])
            let router = try ReportAPIFixture.router(schema: harness.schema)

            // Listed zones read daily rows; the others the 15-minute rows; both exact, DST days included.
            for zone in ReportAPIFixture.zones + ["Asia/Kathmandu", "Australia/Eucla"] {
                let (status, body) = try await ReportAPIFixture.get(router, "/api/reports/daily_usage?tz=\(zone)")
                #expect(status == .ok)
                #expect(body == ExpectedReports.expectedDaily(expected, zone: zone), "daily_usage in \(zone)")
                let range = try await ReportAPIFixture.get(
                    router, "/api/reports/daily_usage?tz=\(zone)&from=2023-03-12&to=2023-11-05&space=hq")
                #expect(
                    range.1
                        == ExpectedReports.expectedDaily(
                            expected, zone: zone, from: "2023-03-12", to: "2023-11-05", space: "hq"))
                let hourly = try await ReportAPIFixture.get(
                    router, "/api/reports/hourly_usage?tz=\(zone)&from=2023-03-11&to=2023-03-13")
                #expect(hourly.1 == Self.expectedHourly(expected, zone: zone, from: "2023-03-11", to: "2023-03-13"))
            }
            #expect(try await ReportAPIFixture.get(router, "/api/reports/daily_usage?space=nowhere").1 == "{}")
            #expect(
                try await ReportAPIFixture.get(
                    router, "/api/reports/daily_usage?from=2023-03-12&to=2023-03-12&tz=America/New_York"
                ).1
                    == ExpectedReports.expectedDaily(
                        expected, zone: "America/New_York", from: "2023-03-12", to: "2023-03-12"))

            // user_visits: every user with a visit, ascending, as one stream and as pages.
            let visited = expected.users.filter { $0.value.visits > 0 }.sorted { $0.key < $1.key }
            let all =
                "{"
                + visited.map { id, user in
                    let joined = user.joined.map { "\"\($0.legacyText)\"" } ?? "null"
                    return "\"\(id)\":{\"joined_at\":\(joined),\"visits\":\(user.visits)}"
                }.joined(separator: ",") + "}"
            #expect(try await ReportAPIFixture.get(router, "/api/reports/user_visits").1 == all)
            var paged: [String] = []
            var after = 0
            while true {
                let page = try await ReportAPIFixture.get(router, "/api/reports/user_visits?limit=50&after=\(after)").1
                guard page != "{}" else { break }
                paged.append(String(page.dropFirst().dropLast()))
                let ids = try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any]
                after = ids?.keys.compactMap { Int($0) }.max() ?? Int.max
            }
            #expect("{" + paged.joined(separator: ",") + "}" == all)

            let summary = try await ReportAPIFixture.get(router, "/api/reports/summary").1
            let object = try #require(try JSONSerialization.jsonObject(with: Data(summary.utf8)) as? [String: Any])
            #expect(object["checkins"] as? Int == expected.checkins)
            #expect(object["users"] as? Int == visited.count)
            #expect(object["first_checkin_at"] as? String == expected.firstCheckin?.rfc3339)
            #expect(object["last_checkin_at"] as? String == expected.lastCheckin?.rfc3339)
            #expect((object["last_folded_at"] as? String)?.hasSuffix("Z") == true)
        }
    }

    @Test func anEmptyDatabaseAnswersEmptyReportsAndNulls() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let router = try ReportAPIFixture.router(schema: harness.schema)
            #expect(try await ReportAPIFixture.get(router, "/api/reports/daily_usage").1 == "{}")
            #expect(try await ReportAPIFixture.get(router, "/api/reports/user_visits").1 == "{}")
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/summary").1
                    == #"{"checkins":0,"users":0,"first_checkin_at":null,"last_checkin_at":null,"last_folded_at":null}"#
            )
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/hourly_usage").1.hasPrefix(#"{"00":0,"01":0,"#))
        }
    }

    static let badQueries: [(String, String)] = [
        ("/api/reports/daily_usage?from=2023-02-30", #"from must be a date YYYY-MM-DD, got \"2023-02-30\""#),
        ("/api/reports/daily_usage?to=yesterday", #"to must be a date YYYY-MM-DD, got \"yesterday\""#),
        ("/api/reports/hourly_usage?tz=IST", #"tz must be an IANA time zone such as Asia/Kolkata, got \"IST\""#),
        ("/api/reports/daily_usage?from=2023-02-08&to=2023-02-07", "from (2023-02-08) is after to (2023-02-07)"),
        (
            "/api/reports/daily_usage?from=2013-01-01&to=2023-01-02",
            "from..to spans more than 10 years; ask for a shorter range"
        ),
        ("/api/reports/daily_usage?space=a%20b", #"space must be 1 to 64 of A-Z a-z 0-9 . _ -, got \"a b\""#),
        (
            "/api/reports/daily_usage?day=2023-02-08",
            #"unknown query parameter \"day\" (known: fill, from, space, to, tz)"#
        ),
        ("/api/reports/daily_usage?tz=UTC&tz=UTC", "tz is given more than once"),
        ("/api/reports/user_visits?limit=10001", #"limit must be an integer from 1 to 10000, got \"10001\""#),
        ("/api/reports/user_visits?limit=ten", #"limit must be an integer from 1 to 10000, got \"ten\""#),
        ("/api/reports/user_visits?after=-1", #"after must be a user id from 0 to 2147483647, got \"-1\""#),
        ("/api/reports/user_visits?offset=5", #"unknown query parameter \"offset\" (known: after, limit)"#),
        ("/api/reports/summary?x=1", #"unknown query parameter \"x\" (this path takes none)"#),
    ]

    @Test("a bad query answers 400 naming the parameter, with the response cache and without")
    func badQuery() async throws {
        for cacheLifetime in [Duration.zero, .seconds(60)] {
            let router = try ReportAPIFixture.router(schema: "public", cacheLifetime: cacheLifetime)
            for (uri, message) in Self.badQueries {
                for _ in 1...2 {
                    let (status, body) = try await ReportAPIFixture.get(router, uri)
                    #expect(status == .badRequest, "\(uri)")
                    #expect(body == #"{"error":""# + message + #""}"#)
                }
            }
        }
    }

    @Test func aCachedReportIsAnsweredAgainForTheSameQueryOnly() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let router = try ReportAPIFixture.router(schema: harness.schema, cacheLifetime: .seconds(60))
            let empty =
                #"{"checkins":0,"users":0,"first_checkin_at":null,"last_checkin_at":null,"last_folded_at":null}"#
            #expect(try await ReportAPIFixture.get(router, "/api/reports/summary") == (.ok, empty))
            #expect(try await ReportAPIFixture.get(router, "/api/reports/daily_usage?tz=UTC") == (.ok, "{}"))

            let database = try await harness.database()
            try await database.execute(
                """
                INSERT INTO visits_quarter_hour (bucket_start, space_id, visits) VALUES ('2025-03-01 10:00Z', 'default', 3);
                INSERT INTO visits_local_day (zone, day, space_id, visits, h10) VALUES ('UTC', '2025-03-01', 'default', 3, 3);
                INSERT INTO fold_totals (slot, checkins, users) VALUES (0, 3, 1);
                """)
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/daily_usage?tz=UTC") == (.ok, "{}"),
                "the cached answer")
            // Answers are kept by the query as parsed: the default zone named or not, parameters in any order.
            #expect(try await ReportAPIFixture.get(router, "/api/reports/daily_usage") == (.ok, "{}"), "the same query")
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/daily_usage?to=2025-12-31&from=2025-01-01&tz=UTC")
                    == (.ok, #"{"2025-03-01":3}"#), "another query")
            try await database.execute("UPDATE visits_local_day SET visits = 5, h10 = 5")
            #expect(
                try await ReportAPIFixture.get(router, "/api/reports/daily_usage?tz=UTC&from=2025-01-01&to=2025-12-31")
                    == (.ok, #"{"2025-03-01":3}"#), "that query in another order, cached")
            #expect(try await ReportAPIFixture.get(router, "/api/reports/summary") == (.ok, empty), "the cached answer")
            let uncached = try ReportAPIFixture.router(schema: harness.schema)
            #expect(
                try await ReportAPIFixture.get(uncached, "/api/reports/summary").1.hasPrefix(
                    #"{"checkins":3,"users":1,"#))
            #expect(
                try await ReportAPIFixture.get(uncached, "/api/reports/daily_usage?tz=UTC").1 == #"{"2025-03-01":5}"#)
        }
    }

    @Test func aDatabaseThatIsDownAnswers503AndLivenessStaysUp() async throws {
        let router = try ReportAPIFixture.routerWithoutDatabase()
        #expect(
            try await ReportAPIFixture.get(router, "/api/reports/daily_usage")
                == (.serviceUnavailable, #"{"error":"the database is unavailable; try again shortly"}"#))
        #expect(try await ReportAPIFixture.get(router, "/api/reports/summary").0 == .serviceUnavailable)
        #expect(try await ReportAPIFixture.get(router, "/readiness_check") == (.serviceUnavailable, "failed"))
        #expect(try await ReportAPIFixture.get(router, "/health_check") == (.ok, "ok"))
        #expect(
            try await ReportAPIFixture.get(router, "/no/such/path") == (
                .notFound, #"{"error":"no such path: /no/such/path"}"#
            ))
    }

    @Test func anotherMethodOnAKnownPathAnswers405AndAnUnknownPath404() async throws {
        let router = try ReportAPIFixture.routerWithoutDatabase()
        let answers = try await Application(router: router).test(.router) { client in
            var answers: [String] = []
            for (method, uri) in [
                (HTTPRequest.Method.post, "/api/reports/daily_usage"), (.delete, "/health_check"),
                (.put, "/openapi.json"), (.post, "/no/such/path"),
            ] {
                try await client.execute(uri: uri, method: method) { response in
                    answers.append(
                        "\(response.status.code) \(response.headers[.allow] ?? "-") \(String(buffer: response.body))")
                }
            }
            return answers
        }
        let readOnly = #"405 GET, HEAD, OPTIONS {"error":"this API is read-only: use GET"}"#
        #expect(answers == [readOnly, readOnly, readOnly, #"404 - {"error":"no such path: /no/such/path"}"#])
    }

    /// Over a live connection, kept alive between the requests: a body sent after a HEAD answer would be read as
    /// the next answer.
    @Test func headAnswersAsGetWithoutTheBodyAndOptionsNamesTheAllowedMethods() async throws {
        let router = try ReportAPIFixture.routerWithoutDatabase()
        let answers = try await Application(router: router).test(.live) { client in
            var answers: [String] = []
            for uri in ["/health_check", "/api/reports/daily_usage?tz=Mars", "/openapi.json", "/no/such/path"] {
                let (status, length, type) = try await client.execute(uri: uri, method: .get) { response in
                    (response.status.code, response.body.readableBytes, response.headers[.contentType] ?? "-")
                }
                try await client.execute(uri: uri, method: .head) { response in
                    let same =
                        response.status.code == status && response.headers[.contentLength] == String(length)
                        && response.headers[.contentType] == type
                    answers.append(
                        "HEAD \(uri) \(response.status.code) as GET: \(same), body: \(response.body.readableBytes)")
                }
            }
            for uri in ["/api/reports/summary", "/metrics", "/no/such/path"] {
                try await client.execute(uri: uri, method: .options) { response in
                    answers.append("OPTIONS \(uri) \(response.status.code) \(response.headers[.allow] ?? "-")")
                }
            }
            return answers
        }
        #expect(
            answers == [
                "HEAD /health_check 200 as GET: true, body: 0",
                "HEAD /api/reports/daily_usage?tz=Mars 400 as GET: true, body: 0",
                "HEAD /openapi.json 200 as GET: true, body: 0",
                "HEAD /no/such/path 404 as GET: true, body: 0",
                "OPTIONS /api/reports/summary 200 GET, HEAD, OPTIONS",
                "OPTIONS /metrics 200 GET, HEAD, OPTIONS",
                "OPTIONS /no/such/path 404 -",
            ])
    }

    @Test func metricsCountAnswersByRouteAndStatusAndTimeThemByRoute() async throws {
        let router = try ReportAPIFixture.routerWithoutDatabase()
        for uri in ["/health_check", "/health_check", "/api/reports/daily_usage", "/api/reports/daily_usage?tz=Mars"] {
            _ = try await ReportAPIFixture.get(router, uri)
        }
        _ = try await ReportAPIFixture.get(router, "/no/such/path")

        let (status, body) = try await ReportAPIFixture.get(router, "/metrics")
        #expect(status == .ok)
        let lines = body.split(separator: "\n").map(String.init)
        #expect(
            lines.filter { $0.hasPrefix("coworking_api_requests_total{") }.sorted() == [
                #"coworking_api_requests_total{route="/api/reports/daily_usage",status="400"} 1"#,
                #"coworking_api_requests_total{route="/api/reports/daily_usage",status="503"} 1"#,
                #"coworking_api_requests_total{route="/health_check",status="200"} 2"#,
                #"coworking_api_requests_total{route="NotFound",status="404"} 1"#,
            ])
        #expect(
            lines.filter { $0.hasPrefix("coworking_api_request_duration_seconds_count{") }.sorted() == [
                #"coworking_api_request_duration_seconds_count{route="/api/reports/daily_usage"} 2"#,
                #"coworking_api_request_duration_seconds_count{route="/health_check"} 2"#,
                #"coworking_api_request_duration_seconds_count{route="NotFound"} 1"#,
            ])
    }

    @Test func theOpenAPIDocumentIsValidAndListsExactlyTheRoutes() async throws {
        let router = try ReportAPIFixture.router(schema: "public")
        let (status, body) = try await ReportAPIFixture.get(router, "/openapi.json")
        #expect(status == .ok)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let documented = Set((document["paths"] as? [String: Any] ?? [:]).keys)
        let routed = Set(router.routes.map { "/" + $0.path.description.trimmingCharacters(in: ["/"]) })
        #expect(documented == routed)

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID()).json")
        try Data(body.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(
            system("python3 -m openapi_spec_validator \(file.path) >/dev/null") == 0,
            "the document is not valid OpenAPI")
    }

    /// schemathesis (PyPI), run against a live API over folded data: every answer a path gives, to valid and invalid
    /// queries, other methods and odd headers, is one the OpenAPI document lists, with the content type and shape it
    /// documents; with the token and without it. Its check that every schema-valid request is accepted is left out:
    /// some rules of a query cannot be written in the schema (a zone's existence, from before to, a span).
    @Test func everyAnswerIsOneTheOpenAPIDocumentLists() async throws {
        try await ReportAPIFixture.withFolded(workload(events: 2_000, users: 80, seed: 59)) { harness in
            try await harness.compactMembers()
            let tokens = try ReportAPIFixture.tokensFile(ReportAPIFixture.digest + "\n")
            defer { try? FileManager.default.removeItem(atPath: tokens) }
            let router = try ReportAPIFixture.router(
                schema: harness.schema, cacheLifetime: .seconds(1), tokensFile: tokens,
                limits: ReportLimits(clientConcurrency: 64))
            // schemathesis keeps a cache in the directory it runs in: a scratch one, not the clone.
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("schemathesis-\(UUID())")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            try await Application(router: router).test(.live) { client in
                let port = try #require(client.port)
                for authorization in [["-H", "Authorization: Bearer s3cret-token"], []] {
                    let (status, output) = try await runToEnd(
                        [
                            "schemathesis", "run", "http://127.0.0.1:\(port)/openapi.json", "--checks", "all",
                            "--exclude-checks", "positive_data_acceptance", "--max-examples", "25", "--seed", "7",
                            "--no-color",
                        ] + authorization, in: scratch)
                    #expect(status == 0, "\(String(decoding: output, as: UTF8.self).suffix(4_000))")
                }
            }
        }
    }
}
