import Basics

/// The reports as CSV (RFC 4180: a header row, CRLF line ends), for spreadsheets: the same numbers as the JSON, days as
/// `YYYY-MM-DD`, hours as `00` to `23`, times in RFC 3339. No value needs quoting: days, hours, numbers, space ids
/// and timestamps hold no comma, quote or line break.
enum ReportCSV {
    static let contentType = "text/csv; charset=utf-8; header=present"

    static func dailyUsage(_ days: [(day: String, visits: Int)]) -> String {
        lines(["day,visits"] + days.map { "\($0.day),\($0.visits)" })
    }

    /// A row per day, then the range's distinct members on a row whose day is `total` (not the sum of the days: a
    /// member who came on several days counts once).
    static func uniqueVisitors(_ days: [(day: String, visits: Int)], total: Int) -> String {
        lines(["day,unique_visitors"] + days.map { "\($0.day),\($0.visits)" } + ["total,\(total)"])
    }

    /// All 24 hours.
    static func hourlyUsage(_ hours: [Int: Int]) -> String {
        lines(["hour,visits"] + (0..<24).map { "\(ReportJSON.pad2($0)),\(hours[$0] ?? 0)" })
    }

    /// All 7 × 24 cells, Monday (1) first.
    static func weekdayHours(_ cells: [Int: [Int: Int]]) -> String {
        lines(
            ["weekday,hour,visits"]
                + (1...7).flatMap { weekday in
                    (0..<24).map { "\(weekday),\(ReportJSON.pad2($0)),\(cells[weekday]?[$0] ?? 0)" }
                })
    }

    static func summary(_ summary: Summary) -> String {
        lines([
            "checkins,users,first_checkin_at,last_checkin_at,last_folded_at",
            "\(summary.checkins),\(summary.users),\(time(summary.firstCheckin)),\(time(summary.lastCheckin)),"
                + time(summary.lastFolded),
        ])
    }

    static func topMembers(_ members: [UserVisits]) -> String {
        lines(["user_id,visits,joined_at"] + members.map { "\($0.userID),\($0.visits),\(time($0.joinedAt))" })
    }

    static let userVisitsHeader = "user_id,joined_at,visits\r\n"

    /// A page of `user_visits`' rows, without the header.
    static func userVisitsRows(_ users: [UserVisits]) -> String {
        lines(users.map { "\($0.userID),\(time($0.joinedAt)),\($0.visits)" })
    }

    private static func lines(_ rows: [String]) -> String {
        rows.map { $0 + "\r\n" }.joined()
    }

    /// RFC 3339, or an empty field.
    private static func time(_ timestamp: Timestamp?) -> String { timestamp?.rfc3339 ?? "" }
}
