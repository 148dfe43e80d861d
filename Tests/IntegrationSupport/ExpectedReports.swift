import Basics
import Foundation
import Pipeline
import Testing

/// The reports' answers computed from the reference model (`ExpectedRollups`), independently of the SQL under test.
public enum ExpectedReports {
    /// Visits per day of `zone`, optionally of one space, from the reference model, as the API writes them.
    public static func expectedDaily(
        _ expected: ExpectedRollups, zone: String, from: String? = nil, to: String? = nil, space: String? = nil
    ) -> String {
        var days: [String: Int] = [:]
        for (key, visits) in expected.daily {
            let parts = key.split(separator: " ").map(String.init)
            guard parts[0] == zone, space == nil || parts[2] == space else { continue }
            if let from, parts[1] < from { continue }
            if let to, parts[1] > to { continue }
            days[parts[1], default: 0] += visits
        }
        return "{" + days.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }

    /// The `limit` members with the most visits in `zone`'s local days from...to, to `space` or any, most first and
    /// ties by ascending id, as `[user id, visits]`, from the reference model.
    public static func expectedTopMembers(
        _ expected: ExpectedRollups, zone: String, from: String = "0000-01-01", to: String = "9999-12-31",
        space: String? = nil, limit: Int
    ) -> [[Int]] {
        var visits: [Int32: Int] = [:]
        for (key, members) in expected.memberDays {
            let parts = key.split(separator: " ").map(String.init)
            guard parts[0] == zone, parts[1] >= from, parts[1] <= to, parts[2] == (space ?? "*") else { continue }
            for (user, count) in members { visits[user, default: 0] += count }
        }
        return visits.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(limit).map { [Int($0.key), $0.value] }
    }

    /// Distinct members per local day of `zone` in from...to, and over the whole range, for `space` or all, from
    /// the reference model's members' visits, their local days from Foundation's calendar.
    public static func expectedUniqueVisitors(
        _ expected: ExpectedRollups, zone: String, from: String, to: String, space: String? = nil
    ) throws -> (days: [String: Int], total: Int) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: zone))
        var members: [String: Set<String>] = [:]
        for visit in expected.memberVisits.keys {
            let parts = visit.split(separator: " ").map(String.init)
            guard space == nil || parts[1] == space else { continue }
            let seconds = try Timestamp(rfc3339: parts[0]).microsecondsSinceEpoch / 1_000_000
            let local = calendar.dateComponents(
                [.year, .month, .day], from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            let day = String(format: "%04d-%02d-%02d", local.year!, local.month!, local.day!)
            guard day >= from, day <= to else { continue }
            members[day, default: []].insert(parts[2])
        }
        return (members.mapValues(\.count), members.values.reduce(into: Set<String>()) { $0.formUnion($1) }.count)
    }
}
