import Shared

/// Moves the members' rows that folds leave in `member_visits_pending` to `member_visits` (the exact source for any
/// zone) and into `member_days` (each folded zone's local days as bitmaps, the cheap source of unique visitors and top
/// members), in one transaction, so that every row is in exactly one of the places the reports read.
///
/// It runs outside the folds' transactions: a batch spread over a year touches hundreds of days, whose bitmaps a fold
/// would rewrite for every batch, while a compaction rewrites each touched day once for all the batches folded since
/// the last one. One compaction runs at a time per schema (an advisory lock, which `consumer migrate` takes too while
/// it fills a zone), so replicas take turns.
public struct MemberCompactor: Sendable {
    /// The most rows one transaction moves, which bounds its memory and its time.
    public var rowsPerTransaction: Int

    public init(rowsPerTransaction: Int = 100_000) {
        self.rowsPerTransaction = rowsPerTransaction
    }

    /// The advisory lock that keeps one compaction (or zone fill) at a time in `schema`.
    static func lockKey(schema: String) -> String { "coworking.members." + schema }

    /// Moves up to `rowsPerTransaction` waiting rows, inside the caller's transaction; returns how many it moved, or
    /// nil when another compaction holds the schema's lock.
    public func compact(on connection: isolated PostgresConnection, schema: String) throws -> Int? {
        let locked = try connection.query(
            "SELECT pg_try_advisory_xact_lock(hashtext($1))", [Self.lockKey(schema: schema)])[0].bool(0)
        guard locked else { return nil }
        try Self.numberNewMembers(from: "member_visits_pending", on: connection)
        // A row whose member has no number yet (folded after the statement above) waits for the next compaction.
        let moved = try connection.query(
            """
            WITH moved AS (
                DELETE FROM member_visits_pending p USING member_ordinals o
                WHERE o.user_id = p.user_id
                  AND p.ctid = ANY (ARRAY(SELECT ctid FROM member_visits_pending LIMIT $1))
                RETURNING p.bucket_start, p.space_id, p.user_id, p.visits, o.ordinal
            ), kept AS (
                INSERT INTO member_visits (bucket_start, space_id, user_id, visits)
                SELECT bucket_start, space_id, user_id, visits FROM moved ORDER BY bucket_start
            )
            SELECT z.zone, (m.bucket_start AT TIME ZONE z.zone)::date::text, m.space_id, m.ordinal, sum(m.visits)
            FROM moved m CROSS JOIN report_zones z
            GROUP BY 1, 2, 3, 4
            UNION ALL
            SELECT NULL, NULL, NULL, NULL, count(*) FROM moved
            ORDER BY 1 NULLS LAST
            """, [rowsPerTransaction])
        var days = MemberDays()
        for row in moved.rows.dropLast() {
            try days.add(
                zone: row.string(0), day: row.string(1), spaceID: row.string(2), ordinal: Int32(row.int(3)),
                visits: Int32(row.int(4)))
        }
        try days.write(mergingStored: true, on: connection)
        return try moved[moved.count - 1].int(4)
    }

    /// Fills `member_days` of `zones` from `member_visits`, inside the caller's transaction (`consumer migrate`, for a
    /// zone it adds, or for every zone when it upgrades to version 6). Waits for the compaction lock first, so that
    /// each row reaches a zone's days exactly once: through this fill while it is in `member_visits`, or through a
    /// compaction that sees the zone once this transaction has committed.
    static func fill(zones: [String], schema: String, on connection: isolated PostgresConnection) throws {
        guard !zones.isEmpty else { return }
        try connection.query("SELECT pg_advisory_xact_lock(hashtext($1))", [lockKey(schema: schema)])
        try numberNewMembers(from: "member_visits", on: connection)
        for zone in zones {
            // A cursor, so that any history is read a slice at a time, days in order: a day's bitmaps are written
            // once its last row has been read. A cursor's statement takes no parameters; the zone travels as a
            // setting of the transaction.
            try connection.query("SELECT set_config('coworking.fill_zone', $1, true)", [zone])
            try connection.query(
                """
                DECLARE member_fill NO SCROLL CURSOR FOR
                SELECT (m.bucket_start AT TIME ZONE current_setting('coworking.fill_zone'))::date::text, m.space_id,
                       o.ordinal, sum(m.visits)
                FROM member_visits m JOIN member_ordinals o USING (user_id)
                GROUP BY 1, 2, 3 ORDER BY 1
                """)
            var days = MemberDays()
            while true {
                let slice = try connection.query("FETCH 50000 FROM member_fill")
                for row in slice.rows {
                    let day = try row.string(0)
                    if let last = days.lastDay, last != day, days.count >= 1_000 {
                        try days.write(mergingStored: false, on: connection)
                        days = MemberDays()
                    }
                    try days.add(
                        zone: zone, day: day, spaceID: row.string(1), ordinal: Int32(row.int(2)),
                        visits: Int32(row.int(3)))
                }
                if slice.count < 50_000 { break }
            }
            try days.write(mergingStored: false, on: connection)
            try connection.execute("CLOSE member_fill")
        }
    }

    /// Numbers the members of `table` that have no number yet, in the order they first came.
    private static func numberNewMembers(from table: String, on connection: isolated PostgresConnection) throws {
        try connection.query(
            """
            INSERT INTO member_ordinals (user_id, ordinal)
            SELECT user_id, nextval('member_ordinal_numbers')
            FROM (
                SELECT m.user_id, min(m.bucket_start) AS first FROM \(table) m
                WHERE NOT EXISTS (SELECT FROM member_ordinals o WHERE o.user_id = m.user_id)
                GROUP BY m.user_id ORDER BY first, m.user_id
            ) AS new
            """)
    }
}

/// Members' days being built or merged, per zone, local day and space, with each day's day of any space beside.
struct MemberDays {
    struct Key: Hashable, Comparable {
        var zone: String
        var day: String
        /// The space, or "" for any space.
        var spaceID: String

        static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.zone, lhs.day, lhs.spaceID) < (rhs.zone, rhs.day, rhs.spaceID)
        }
    }

    private(set) var days: [Key: MemberDay] = [:]
    private(set) var lastDay: String?

    var count: Int { days.count }

    mutating func add(zone: String, day: String, spaceID: String, ordinal: Int32, visits: Int32) {
        days[Key(zone: zone, day: day, spaceID: spaceID), default: MemberDay()].add(ordinal: ordinal, visits: visits)
        days[Key(zone: zone, day: day, spaceID: ""), default: MemberDay()].add(ordinal: ordinal, visits: visits)
        lastDay = day
    }

    /// Writes the days, in key order; with `mergingStored`, each is first merged with the stored one.
    func write(mergingStored: Bool, on connection: isolated PostgresConnection) throws {
        guard !days.isEmpty else { return }
        let keys = days.keys.sorted()
        var merged = days
        if mergingStored {
            let stored = try connection.query(
                """
                SELECT d.zone, d.day::text, d.space_id, d.members, d.repeats
                FROM member_days d JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(zone, day, space_id)
                  ON d.zone = k.zone AND d.day = k.day::date AND d.space_id = k.space_id
                """, [keys.map(\.zone), keys.map(\.day), keys.map(\.spaceID)])
            for row in stored.rows {
                let key = Key(zone: try row.string(0), day: try row.string(1), spaceID: try row.string(2))
                merged[key]?.formUnion(try MemberDay(presence: row.bytes(3), encodedRepeats: row.bytes(4)))
            }
        }
        let written = keys.map { merged[$0] ?? MemberDay() }
        try connection.query(
            """
            INSERT INTO member_days (zone, day, space_id, members, repeats)
            SELECT zone, day::date, space_id, members, repeats
            FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
                AS k(zone, day, space_id, members, repeats)
            ON CONFLICT (zone, day, space_id) DO UPDATE SET members = excluded.members, repeats = excluded.repeats
            """,
            [
                keys.map(\.zone), keys.map(\.day), keys.map(\.spaceID), written.map { PostgresBytes($0.presence) },
                written.map { PostgresBytes($0.encodedRepeats) },
            ])
    }
}
