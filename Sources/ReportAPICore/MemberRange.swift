import Basics
import Pipeline
import PostgresClient

/// The members of a range of days, as `PostgresReportQueries` reads them: each day's compacted members as stored (a
/// bitmap and its repeats, decoded only where needed), and the members' rows the compactor has not taken yet, added to
/// their day. Counts unique visitors per day and over the range, and the members with the most visits, in memory: a
/// year of a zone's days is a few hundred bitmaps.
struct MemberRange {
    /// Each day's compacted members: the bitmap, and the repeats in their stored form.
    private var stored: [String: (presence: [UInt8], repeats: [UInt8])] = [:]
    /// Each day's members of rows not compacted yet, who have a number (`member_ordinals`).
    private var recent: [String: MemberDay] = [:]
    /// Each day's members of rows not compacted yet, who have no number yet (they first came after the last
    /// compaction), by user id.
    private var newcomers: [String: [Int32: Int32]] = [:]

    /// A day's compacted members (one row per day: the query names one space, or any).
    mutating func add(day: String, presence: [UInt8], repeats: [UInt8]) {
        stored[day] = (presence, repeats)
    }

    /// A row not compacted yet: `visits` of member `userID`, whose number is `ordinal` if they have one.
    mutating func add(day: String, userID: Int32, ordinal: Int32?, visits: Int32) {
        if let ordinal {
            recent[day, default: MemberDay()].add(ordinal: ordinal, visits: visits)
        } else {
            newcomers[day, default: [:]][userID, default: 0] += visits
        }
    }

    /// The members of `day` that have a number, as a bitmap.
    private func presence(of day: String) -> [UInt8] {
        var bitmap = stored[day]?.presence ?? []
        if let recent = recent[day] { MemberDay.union(&bitmap, recent.presence) }
        return bitmap
    }

    /// Distinct members per day with any, ascending.
    var uniqueVisitorsPerDay: [(day: String, visits: Int)] {
        Set(stored.keys).union(recent.keys).union(newcomers.keys).sorted().map { day in
            (day, MemberDay.count(presence(of: day)) + (newcomers[day]?.count ?? 0))
        }
    }

    /// Distinct members over the whole range.
    var uniqueVisitors: Int {
        var everyone: [UInt8] = []
        for day in stored.values { MemberDay.union(&everyone, day.presence) }
        for day in recent.values { MemberDay.union(&everyone, day.presence) }
        let newcomerIDs = newcomers.values.reduce(into: Set<Int32>()) { $0.formUnion($1.keys) }
        return MemberDay.count(everyone) + newcomerIDs.count
    }

    /// The `limit` members with the most visits, most first, ties by ascending user id, with their join times.
    /// Numbers are turned into user ids for the leaders only; a number whose member was forgotten
    /// (`consumer forget-member`) maps to a pseudonym, not a user id, and is left out.
    func topMembers(limit: Int, on connection: PostgresConnection) async throws -> [UserVisits] {
        let bits =
            max(
                stored.values.map(\.presence.count).max() ?? 0, recent.values.map(\.presence.count).max() ?? 0) * 8
        var visitsByOrdinal = [Int32](repeating: 0, count: bits)
        for day in stored.values {
            MemberDay.addPresence(day.presence, to: &visitsByOrdinal)
            try MemberDay.forEachRepeat(in: day.repeats, of: day.presence) { visitsByOrdinal[Int($0)] += $1 }
        }
        for day in recent.values { day.addVisits(to: &visitsByOrdinal) }
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
