import Basics

/// The JSON of the reports, written by hand: the shapes are fixed by the legacy service, keys keep their order
/// (days and user ids ascending, as Flask's `jsonify` sorted them), and pages are written as they are read.
enum ReportJSON {
    /// `{"2023-02-07":40,"2023-02-08":202}`
    static func dailyUsage(_ days: [(day: String, visits: Int)]) -> String {
        "{" + days.map { "\"\($0.day)\":\($0.visits)" }.joined(separator: ",") + "}"
    }

    /// Distinct members per day and over the range: `{"days":{"2023-02-07":12,"2023-02-08":9},"total":17}`.
    static func uniqueVisitors(_ days: [(day: String, visits: Int)], total: Int) -> String {
        "{\"days\":" + dailyUsage(days) + ",\"total\":\(total)}"
    }

    /// All 24 hours, `{"00":3,"01":0,...,"23":5}`.
    static func hourlyUsage(_ hours: [Int: Int]) -> String {
        "{" + (0..<24).map { "\"\(pad2($0))\":\(hours[$0] ?? 0)" }.joined(separator: ",") + "}"
    }

    /// The members of `user_visits` for a page, without the enclosing braces: `"1":{"joined_at":...,"visits":6}`.
    static func userVisitsMembers(_ users: [UserVisits]) -> String {
        users.map { user in
            let joined = user.joinedAt.map { "\"\($0.legacyText)\"" } ?? "null"
            return "\"\(user.userID)\":{\"joined_at\":\(joined),\"visits\":\(user.visits)}"
        }.joined(separator: ",")
    }

    /// Every weekday (1 is Monday) with all 24 hours: `{"1":{"00":0,...,"23":4},...,"7":{...}}`.
    static func weekdayHours(_ cells: [Int: [Int: Int]]) -> String {
        "{" + (1...7).map { "\"\($0)\":" + hourlyUsage(cells[$0] ?? [:]) }.joined(separator: ",") + "}"
    }

    /// `[{"user_id":7,"visits":12,"joined_at":"2023-02-07T08:00:00Z"},...]`, most visits first.
    static func topMembers(_ members: [UserVisits]) -> String {
        "["
            + members.map {
                "{\"user_id\":\($0.userID),\"visits\":\($0.visits),\"joined_at\":\(time($0.joinedAt))}"
            }.joined(separator: ",") + "]"
    }

    /// What the dashboard offers to choose from: `{"default_zone":"UTC","zones":["UTC"],"spaces":["hq"]}`.
    static func filters(defaultZone: String, zones: [String], spaces: [String]) -> String {
        "{\"default_zone\":\(string(defaultZone)),\"zones\":[\(zones.map(string).joined(separator: ","))],"
            + "\"spaces\":[\(spaces.map(string).joined(separator: ","))]}"
    }

    static func summary(_ summary: Summary) -> String {
        "{\"checkins\":\(summary.checkins),\"users\":\(summary.users),"
            + "\"first_checkin_at\":\(time(summary.firstCheckin)),\"last_checkin_at\":\(time(summary.lastCheckin)),"
            + "\"last_folded_at\":\(time(summary.lastFolded))}"
    }

    /// An RFC 3339 string, or null.
    private static func time(_ timestamp: Timestamp?) -> String { timestamp.map { "\"\($0.rfc3339)\"" } ?? "null" }

    /// `{"error":"..."}`, the message escaped.
    static func error(_ message: String) -> String {
        "{\"error\":" + string(message) + "}"
    }

    /// A JSON string literal of `text`.
    static func string(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                result += "\\u00" + pad2Hex(Int(scalar.value))
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    static func pad2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }

    private static func pad2Hex(_ value: Int) -> String {
        let hex = String(value, radix: 16)
        return hex.count < 2 ? "0" + hex : hex
    }
}
