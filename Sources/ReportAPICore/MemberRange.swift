import Shared

/// The members of a range of days, as `ReportReader` reads them: each day's compacted members (`MemberDay`) and the
/// members' rows that still wait for the compactor, which are added to their day. Counts unique visitors per day and
/// over the range, and the members with the most visits, in memory: a year of a zone's days is a few hundred bitmaps.
struct MemberRange {
    /// Each day's members that have a number (`member_ordinals`).
    private var days: [String: MemberDay] = [:]
    /// Each day's members that have no number yet (they first came after the last compaction), by user id.
    private var newcomers: [String: [Int32: Int32]] = [:]

    mutating func add(day: String, _ members: MemberDay) {
        days[day, default: MemberDay()].formUnion(members)
    }

    /// A waiting row: `visits` of member `userID`, whose number is `ordinal` if they have one.
    mutating func add(day: String, userID: Int32, ordinal: Int32?, visits: Int32) {
        if let ordinal {
            days[day, default: MemberDay()].add(ordinal: ordinal, visits: visits)
        } else {
            newcomers[day, default: [:]][userID, default: 0] += visits
        }
    }

    /// Distinct members per day with any, ascending.
    var uniqueVisitorsPerDay: [(day: String, visits: Int)] {
        Set(days.keys).union(newcomers.keys).sorted().map { day in
            (day, (days[day]?.memberCount ?? 0) + (newcomers[day]?.count ?? 0))
        }
    }

    /// Distinct members over the whole range.
    var uniqueVisitors: Int {
        var everyone: [UInt8] = []
        for day in days.values { MemberDay.union(&everyone, day.presence) }
        let newcomerIDs = newcomers.values.reduce(into: Set<Int32>()) { $0.formUnion($1.keys) }
        return everyone.reduce(0) { $0 + $1.nonzeroBitCount } + newcomerIDs.count
    }

    /// The `limit` members with the most visits, most first, ties by ascending user id, with their join times.
    /// Numbers are turned into user ids for the leaders only; a number whose member was forgotten
    /// (`consumer forget-member`) maps to a pseudonym, not a user id, and is left out.
    func topMembers(limit: Int, on connection: PostgresConnection) async throws -> [UserVisits] {
        var visitsByOrdinal: [Int32] = []
        for day in days.values {
            day.forEachMember { ordinal, visits in
                let index = Int(ordinal)
                if index >= visitsByOrdinal.count {
                    visitsByOrdinal.append(contentsOf: repeatElement(0, count: index + 1 - visitsByOrdinal.count))
                }
                visitsByOrdinal[index] += visits
            }
        }
        let newcomerVisits = newcomers.values.reduce(into: [Int32: Int]()) { total, day in
            for (user, visits) in day { total[user, default: 0] += Int(visits) }
        }
        let ranked = visitsByOrdinal.indices.filter { visitsByOrdinal[$0] > 0 }.sorted {
            visitsByOrdinal[$0] > visitsByOrdinal[$1]
        }
        // Leaders are looked up a slice at a time until `limit` are known and no one left could tie the last.
        var leaders = newcomerVisits.map { UserVisits(userID: Int($0.key), visits: $0.value, joinedAt: nil) }
        var next = 0
        while next < ranked.count {
            let settled = leaders.sorted(by: Self.ranksBefore)
            if settled.count >= limit, Int(visitsByOrdinal[ranked[next]]) < settled[limit - 1].visits { break }
            let slice = ranked[next..<min(next + max(limit, 100), ranked.count)]
            next = slice.endIndex
            let rows = try await connection.query(
                "SELECT ordinal, user_id FROM member_ordinals WHERE ordinal = ANY($1::int[]) AND user_id > 0",
                [slice.map { Int32($0) }])
            for row in rows.rows {
                leaders.append(
                    UserVisits(userID: try row.int(1), visits: Int(visitsByOrdinal[try row.int(0)]), joinedAt: nil))
            }
        }
        var top = Array(leaders.sorted(by: Self.ranksBefore).prefix(limit))
        let joined = try await connection.query(
            "SELECT user_id, joined_at FROM user_activity WHERE user_id = ANY($1::int[])",
            [top.map { Int32($0.userID) }])
        var joinedAt: [Int: Timestamp] = [:]
        for row in joined.rows { joinedAt[try row.int(0)] = try row.optionalTimestamp(1) }
        for index in top.indices { top[index].joinedAt = joinedAt[top[index].userID] }
        return top
    }

    private static func ranksBefore(_ lhs: UserVisits, _ rhs: UserVisits) -> Bool {
        (lhs.visits, rhs.userID) > (rhs.visits, lhs.userID)
    }
}
