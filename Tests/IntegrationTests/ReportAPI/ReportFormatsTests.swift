import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import Pipeline
import ReportAPICore
import Testing

/// The dashboard's reports (`weekday_hours`, `top_members`, `filters`), zero-filled days, and CSV, against the
/// rollups of a known workload.
@Suite
struct ReportFormatsTests {

    /// The first local day of `zone` with a visit, in the reference model.
    static func firstDayWithData(_ expected: ExpectedRollups, zone: String) -> String? {
        expected.daily.keys.map { $0.split(separator: " ").map(String.init) }.filter { $0[0] == zone }.map { $0[1] }
            .min()
    }

    /// Visits per ISO weekday (1 is Monday) and hour of `zone`'s local days in from...to, from the reference model.
    static func expectedWeekdayHours(_ expected: ExpectedRollups, zone: String, from: String, to: String)
        -> [Int: [Int: Int]]
    {
        var cells: [Int: [Int: Int]] = [:]
        for (key, visits) in expected.hourly {
            let parts = key.split(separator: " ").map(String.init)
            guard parts[0] == zone, parts[1] >= from, parts[1] <= to, let day = LocalDate(parts[1]),
                let hour = Int(parts[2])
            else { continue }
            // 1970-01-01 was a Thursday, ISO weekday 4.
            let weekday = ((day.dayNumber + 3) % 7 + 7) % 7 + 1
            cells[weekday, default: [:]][hour, default: 0] += visits
        }
        return cells
    }

    @Test func theDashboardsReportsZeroFilledDaysAndCSVMatchTheWorkloadExactly() async throws {
        let events = workload(events: 3_000, users: 120, seed: 23)
        try await ReportAPIFixture.withFolded(events) { harness in
            let expected = try ExpectedRollups(events: events, zones: ReportAPIFixture.zones + ["Asia/Kathmandu"])
            let router = try ReportAPIFixture.router(schema: harness.schema)
            try await Application(router: router).test(.router) { client in
                // fill=zero lists every day of the range that lies within the days with data, 0 where nobody came; the
                // default leaves them out. The workload's first visits in Kolkata are on March 11.
                let range = "tz=Asia/Kolkata&from=2023-03-01&to=2023-03-31"
                let sparse = try await ReportAPIFixture.get(client, "/api/reports/daily_usage?\(range)")
                let days = try #require(
                    try JSONSerialization.jsonObject(with: Data(sparse.body.utf8)) as? [String: Int])
                let firstDay = try #require(Self.firstDayWithData(expected, zone: "Asia/Kolkata"))
                #expect(firstDay == "2023-03-11")
                #expect(days.count < 21, "the workload leaves some days of March without visits")
                let filled = try await ReportAPIFixture.get(client, "/api/reports/daily_usage?\(range)&fill=zero")
                let expectedFilled = (11...31).map { day in
                    let date = String(format: "2023-03-%02d", day)
                    return (date, days[date] ?? 0)
                }
                #expect(filled.body == "{" + expectedFilled.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
                #expect(
                    sparse.body
                        == ExpectedReports.expectedDaily(
                            expected, zone: "Asia/Kolkata", from: "2023-03-01", to: "2023-03-31"))

                // The same days as CSV, asked either way: a header row, ISO dates, CRLF.
                let csv = "day,visits\r\n" + expectedFilled.map { "\($0.0),\($0.1)\r\n" }.joined()
                let byParameter = try await ReportAPIFixture.get(
                    client, "/api/reports/daily_usage?\(range)&fill=zero&format=csv")
                #expect(byParameter.body == csv)
                #expect(byParameter.headers[.contentType] == "text/csv; charset=utf-8; header=present")
                #expect(byParameter.headers[.vary] == "Accept")
                let version = try #require(filled.headers[.eTag]?.dropFirst().dropLast())
                #expect(byParameter.headers[.eTag] == "\"\(version)-csv\"")
                let byAccept = try await ReportAPIFixture.get(
                    client, "/api/reports/daily_usage?\(range)&fill=zero", [.accept: "text/csv"])
                #expect(byAccept.body == csv)
                #expect(
                    try await ReportAPIFixture.get(
                        client, "/api/reports/daily_usage?\(range)&fill=zero",
                        [.accept: "text/csv", .ifNoneMatch: "\"\(version)-csv\""]
                    ).status == .notModified)

                // Busy hours: every weekday and hour, from the local-day rows of a folded zone and from the 15-minute
                // rows of another, equal to the model.
                for zone in ["America/New_York", "Asia/Kathmandu"] {
                    let cells = Self.expectedWeekdayHours(expected, zone: zone, from: "2023-03-01", to: "2023-06-30")
                    let json =
                        "{"
                        + (1...7).map { weekday in
                            "\"\(weekday)\":{"
                                + (0..<24).map { String(format: "\"%02d\":%d", $0, cells[weekday]?[$0] ?? 0) }
                                .joined(separator: ",") + "}"
                        }.joined(separator: ",") + "}"
                    let query = "tz=\(zone)&from=2023-03-01&to=2023-06-30"
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/weekday_hours?\(query)").body == json,
                        "in \(zone)")
                    let rows = (1...7).flatMap { weekday in
                        (0..<24).map { String(format: "%d,%02d,%d\r\n", weekday, $0, cells[weekday]?[$0] ?? 0) }
                    }
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/weekday_hours?\(query)&format=csv").body
                            == "weekday,hour,visits\r\n" + rows.joined())
                }

                // The members with the most visits, ties by id.
                let top = expected.users.filter { $0.value.visits > 0 }
                    .sorted { ($0.value.visits, -Int($0.key)) > ($1.value.visits, -Int($1.key)) }.prefix(5)
                let topJSON = top.map { id, user in
                    "{\"user_id\":\(id),\"visits\":\(user.visits),\"joined_at\":"
                        + (user.joined.map { "\"\($0.rfc3339)\"" } ?? "null") + "}"
                }
                #expect(
                    try await ReportAPIFixture.get(client, "/api/reports/top_members?limit=5").body
                        == "[" + topJSON.joined(separator: ",") + "]")
                #expect(
                    try await ReportAPIFixture.get(client, "/api/reports/top_members?limit=5&format=csv").body
                        == "user_id,visits,joined_at\r\n"
                        + top.map { "\($0.key),\($0.value.visits),\($0.value.joined?.rfc3339 ?? "")\r\n" }.joined())

                // user_visits streams CSV too, every user with a visit by ascending id.
                let visited = expected.users.filter { $0.value.visits > 0 }.sorted { $0.key < $1.key }
                #expect(
                    try await ReportAPIFixture.get(client, "/api/reports/user_visits", [.accept: "text/csv"]).body
                        == "user_id,joined_at,visits\r\n"
                        + visited.map { "\($0.key),\($0.value.joined?.rfc3339 ?? ""),\($0.value.visits)\r\n" }.joined())

                let summary = try await ReportAPIFixture.get(client, "/api/reports/summary?format=csv").body.split(
                    separator: "\r\n")
                #expect(summary.first == "checkins,users,first_checkin_at,last_checkin_at,last_folded_at")
                #expect(
                    summary.last?.hasPrefix(
                        "\(expected.checkins),\(visited.count),\(expected.firstCheckin?.rfc3339 ?? ""),"
                            + "\(expected.lastCheckin?.rfc3339 ?? ""),") == true)

                #expect(
                    try await ReportAPIFixture.get(client, "/api/reports/filters").body
                        == #"{"default_zone":"UTC","zones":["UTC","Asia/Kolkata","America/New_York"],"#
                        + #""spaces":["annex.b_2","default","hq"]}"#)

                for (uri, message) in [
                    ("/api/reports/summary?format=xml", #"format must be json or csv, got \"xml\""#),
                    ("/api/reports/daily_usage?fill=nothing", #"fill must be zero, got \"nothing\""#),
                    ("/api/reports/top_members?limit=0", #"limit must be an integer from 1 to 1000, got \"0\""#),
                    ("/api/reports/daily_usage?format=csv&format=json", "format is given more than once"),
                ] {
                    let answer = try await ReportAPIFixture.get(client, uri)
                    #expect(answer.status == .badRequest)
                    #expect(answer.body == #"{"error":""# + message + #""}"#, "\(uri)")
                }
            }
        }
    }

    @Test func uniqueVisitorsCountEachMemberOncePerDayAndOncePerRangeInAnyZone() async throws {
        let events = workload(events: 3_000, users: 120, seed: 29)
        try await ReportAPIFixture.withFolded(events) { harness in
            let expected = try ExpectedRollups(events: events, zones: ReportAPIFixture.zones + ["Asia/Kathmandu"])
            let router = try ReportAPIFixture.router(schema: harness.schema)
            // The same answers while the members' rows wait for the compactor, and once they are in the members' days.
            for compacted in [false, true] {
                if compacted { try await harness.compactMembers() }
                try await Application(router: router).test(.router) { client in
                    // A zone of REPORT_TIMEZONES, one space of it, and a zone that is not listed (UTC+05:45).
                    for (zone, space) in [("Asia/Kolkata", nil), ("Asia/Kolkata", "hq"), ("Asia/Kathmandu", nil)] {
                        let (days, total) = try ExpectedReports.expectedUniqueVisitors(
                            expected, zone: zone, from: "2023-03-01", to: "2023-03-31", space: space)
                        // The workload repeats members within a day and across days, so that counting visits instead of
                        // members, or adding the days' counts up, would give other numbers.
                        #expect(days.values.reduce(0, +) > total)
                        let visits = try #require(
                            try JSONSerialization.jsonObject(
                                with: Data(
                                    ExpectedReports.expectedDaily(
                                        expected, zone: zone, from: "2023-03-01", to: "2023-03-31", space: space
                                    ).utf8)) as? [String: Int])
                        #expect(visits.values.reduce(0, +) > days.values.reduce(0, +))
                        // fill=zero lists the days from the first with data in the zone (of any space).
                        let firstDay = try #require(Self.firstDayWithData(expected, zone: zone))
                        let filled = (1...31).map { String(format: "2023-03-%02d", $0) }.filter { $0 >= firstDay }.map {
                            ($0, days[$0] ?? 0)
                        }
                        let query = "tz=\(zone)&from=2023-03-01&to=2023-03-31" + (space.map { "&space=\($0)" } ?? "")
                        let json = filled.filter { $0.1 > 0 }.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",")
                        #expect(
                            try await ReportAPIFixture.get(client, "/api/reports/unique_visitors?\(query)").body
                                == "{\"days\":{\(json)},\"total\":\(total)}", "\(zone), space \(space ?? "all")")
                        let csv = "day,unique_visitors\r\n" + filled.map { "\($0.0),\($0.1)\r\n" }.joined()
                        #expect(
                            try await ReportAPIFixture.get(
                                client, "/api/reports/unique_visitors?\(query)&fill=zero&format=csv"
                            ).body
                                == csv + "total,\(total)\r\n")
                    }
                    // A member who came to two spaces on one day counts once in that day's count of all spaces.
                    func dayCounts(_ space: String?) throws -> Int {
                        try ExpectedReports.expectedUniqueVisitors(
                            expected, zone: "Asia/Kolkata", from: "2023-03-01", to: "2023-03-31", space: space
                        ).days.values.reduce(0, +)
                    }
                    let spacesDayCounts: Int = try ["annex.b_2", "default", "hq"].map(dayCounts).reduce(0, +)
                    #expect(try dayCounts(nil) < spacesDayCounts)

                    // Every member of the workload over all time; none in a range without visits.
                    let everyone = expected.users.values.count { $0.visits > 0 }
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/unique_visitors?tz=America/New_York").body
                            .hasSuffix(",\"total\":\(everyone)}"))
                    #expect(
                        try await ReportAPIFixture.get(
                            client, "/api/reports/unique_visitors?tz=UTC&from=2020-01-01&to=2020-12-31"
                        ).body
                            == #"{"days":{},"total":0}"#)

                    // The members with the most visits over a range, in a zone of REPORT_TIMEZONES (members' days) and
                    // in one that is not (15-minute rows), for all spaces and one; all time from the users' totals.
                    for (zone, space) in [("Asia/Kolkata", nil), ("Asia/Kolkata", "hq"), ("Asia/Kathmandu", "hq")] {
                        let query = "tz=\(zone)&from=2023-06-01&to=2023-11-05" + (space.map { "&space=\($0)" } ?? "")
                        let expectedTop = ExpectedReports.expectedTopMembers(
                            expected, zone: zone, from: "2023-06-01", to: "2023-11-05", space: space, limit: 25)
                        // Counting quarter hours or days instead of visits, or one space for all, would differ.
                        #expect(expectedTop.count == 25 && expectedTop[0][1] > expectedTop[24][1])
                        let top = try await ReportAPIFixture.get(client, "/api/reports/top_members?\(query)&limit=25")
                        let members = try #require(
                            try JSONSerialization.jsonObject(with: Data(top.body.utf8)) as? [[String: Any]])
                        #expect(
                            members.map { [$0["user_id"] as? Int ?? -1, $0["visits"] as? Int ?? -1] } == expectedTop,
                            "\(zone), space \(space ?? "all")")
                        let joined = members.compactMap { $0["joined_at"] as? String }
                        let expectedJoined = expectedTop.compactMap { expected.users[Int32($0[0])]?.joined?.rfc3339 }
                        #expect(joined == expectedJoined)
                    }
                    let allTime = expected.users.sorted { ($0.value.visits, $1.key) > ($1.value.visits, $0.key) }
                    #expect(
                        try await ReportAPIFixture.get(client, "/api/reports/top_members?limit=3&format=csv").body
                            == "user_id,visits,joined_at\r\n"
                            + allTime.prefix(3).map {
                                "\($0.key),\($0.value.visits),\($0.value.joined?.rfc3339 ?? "")\r\n"
                            }
                            .joined())
                }
            }
        }
    }

    /// In a zone without daily rows, unique_visitors reads every member's 15-minute row of its range, which is
    /// bounded by the days it spans with data, as the other reports of 15-minute rows are; in a zone of
    /// REPORT_TIMEZONES it reads the members' days, and any range answers.
    @Test func uniqueVisitorsRefuseARangeOfMoreThan1096DaysWithDataOnlyInAZoneWithoutDailyRows() async throws {
        let events = [
            Timestamp(year: 2019, month: 1, day: 1, hour: 9), Timestamp(year: 2023, month: 6, day: 1, hour: 9),
        ]
        .map { Event(id: UUID(), kind: .checkin, userID: 7, occurredAt: $0, spaceID: "hq") }
        try await ReportAPIFixture.withFolded(events) { harness in
            try await harness.compactMembers()
            let router = try ReportAPIFixture.router(schema: harness.schema)
            try await Application(router: router).test(.router) { client in
                let all = try await ReportAPIFixture.get(client, "/api/reports/unique_visitors?tz=Asia/Kathmandu")
                #expect(all.status == .badRequest)
                #expect(
                    all.body
                        == #"{"error":"from..to spans 1613 days of data in Asia/Kathmandu, a zone without daily rows (not "#
                        + #"in REPORT_TIMEZONES), where unique_visitors may span 1096 days at most: narrow from and to, "#
                        + #"or ask in a zone of REPORT_TIMEZONES"}"#)
                #expect(
                    try await ReportAPIFixture.get(
                        client, "/api/reports/unique_visitors?tz=Asia/Kathmandu&from=2021-01-01"
                    ).body
                        == #"{"days":{"2023-06-01":1},"total":1}"#)
                #expect(
                    try await ReportAPIFixture.get(client, "/api/reports/unique_visitors?tz=UTC").body
                        == #"{"days":{"2019-01-01":1,"2023-06-01":1},"total":1}"#)
            }
        }
    }

    @Test(
        "Accept asks for CSV only when it weighs text/csv above JSON",
        arguments: [
            ("text/csv", ReportFormat.csv), ("text/csv, */*;q=0.1", .csv),
            ("Text/CSV;q=0.9, application/json;q=0.5", .csv),
            ("application/json, text/csv;q=0.5", .json), ("*/*", .json), ("text/csv;q=0.5, */*;q=0.5", .json),
            ("text/html", .json), ("", .json),
        ])
    func acceptPreference(_ accept: String, _ format: ReportFormat) {
        #expect(ReportFormat.preferred(accept: accept) == format)
    }

    @Test func theDashboardIsServedWithItsAssetsAndTheirCacheHeaders() async throws {
        let router = try ReportAPIFixture.routerWithoutDatabase()
        try await Application(router: router).test(.router) { client in
            let page = try await ReportAPIFixture.get(client, "/")
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/html; charset=utf-8")
            #expect(page.headers[.cacheControl] == "no-cache")
            #expect(page.headers[.contentSecurityPolicy]?.hasPrefix("default-src 'self';") == true)
            let tag = try #require(page.headers[.eTag])
            #expect(try await ReportAPIFixture.get(client, "/", [.ifNoneMatch: tag]).status == .notModified)
            // Each asset is linked with its version, and kept a year under that name.
            for name in ["app.js", "app.css", "chart.js"] {
                let link = try #require(page.body.firstMatch(of: try Regex("/dashboard/\(name)\\?v=([0-9a-f]+)")))
                let asset = try await ReportAPIFixture.get(client, String(link.0))
                #expect(asset.status == .ok, "\(name)")
                #expect(asset.headers[.cacheControl] == "public, max-age=31536000, immutable")
                #expect(asset.headers[.eTag] == "\"\(link.output[1].substring ?? "")\"")
            }
            #expect(try await ReportAPIFixture.get(client, "/dashboard/other.js").status == .notFound)
        }
    }
}
