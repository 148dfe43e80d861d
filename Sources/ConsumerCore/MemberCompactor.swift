import Pipeline
import PostgresClient

/// Folds the members' rows that folds append to `member_visits` into `member_days` (each folded zone's local days as
/// bitmaps, the cheap source of unique visitors and top members), outside the folds' transactions.
///
/// Which rows are new is told by the transaction that appended them (`appended_by`) against a watermark
/// (`member_compaction`): every row appended by a transaction below the watermark is in `member_days`. A compaction
/// takes the rows of the transactions that ended since: those below the oldest transaction still running (its
/// snapshot's xmin), which no later commit can add to, in slices of whole transactions, and moves the watermark up in
/// the same transaction, so that the reports, which read `member_days` and the rows above the watermark in one
/// snapshot, count every row exactly once. No row is copied or deleted.
///
/// Why outside the fold: a batch spread over a year touches hundreds of days, whose bitmaps a fold would rewrite for
/// every batch; a compaction rewrites each touched day once for all the batches folded since the last one. One
/// compaction runs at a time per schema (an advisory lock, which `consumer migrate` takes too while it fills a zone).
public struct MemberCompactor: Sendable {
    /// The most rows one transaction takes (whole transactions of folds, so one more fold's at most), which bounds its
    /// memory and its time.
    public var rowsPerTransaction: Int

    public init(rowsPerTransaction: Int = 50_000) {
        self.rowsPerTransaction = rowsPerTransaction
    }

    /// The advisory lock that keeps one compaction (or zone fill) at a time in `schema`.
    static func lockKey(schema: String) -> String { "coworking.members." + schema }

    /// Compacts the rows of transactions that ended since the last compaction, up to about `rowsPerTransaction` of
    /// them, inside the caller's transaction; returns how many it took, or nil when another compaction holds the
    /// schema's lock.
    public func compact(on connection: isolated PostgresConnection, schema: String) throws -> Int? {
        let locked = try connection.query(
            "SELECT pg_try_advisory_xact_lock(hashtext($1))", [Self.lockKey(schema: schema)])[0].bool(0)
        guard locked else { return nil }
        let bounds = try connection.query(
            """
            SELECT compacted_below::text, pg_snapshot_xmin(pg_current_snapshot())::text FROM member_compaction
            """)[0]
        let (from, ended) = (try bounds.string(0), try bounds.string(1))
        // The transactions since the watermark, oldest first, with their rows: a slice of whole ones.
        let appended = try connection.query(
            """
            SELECT appended_by::text, count(*) FROM member_visits
            WHERE appended_by >= $1::bigint AND appended_by < $2::bigint
            GROUP BY appended_by ORDER BY appended_by
            """, [from, ended])
        var (taken, below) = (0, ended)
        for row in appended.rows {
            if taken >= rowsPerTransaction {
                below = try row.string(0)
                break
            }
            taken += try row.int(1)
        }
        guard taken > 0 else { return 0 }
        try Self.numberNewMembers(appendedFrom: from, below: below, on: connection)
        var days = MemberDays()
        // A member may come twice in the rows of one day and space: MemberDay adds their visits up.
        let rows = try connection.query(
            """
            SELECT z.zone, (v.bucket_start AT TIME ZONE z.zone)::date::text, v.space_id,
                   array_agg(o.ordinal)::text, array_agg(v.visits)::text
            FROM member_visits v JOIN member_ordinals o USING (user_id) CROSS JOIN report_zones z
            WHERE v.appended_by >= $1::bigint AND v.appended_by < $2::bigint
            GROUP BY 1, 2, 3
            """, [from, below])
        for row in rows.rows {
            try days.add(
                zone: row.string(0), day: row.string(1), spaceID: row.string(2), ordinals: row.string(3),
                visits: row.string(4))
        }
        try days.write(mergingStored: true, on: connection)
        try connection.query("UPDATE member_compaction SET compacted_below = $1::bigint", [below])
        return taken
    }

    /// Fills `member_days` of `zones` from the rows below the watermark, inside the caller's transaction (`consumer
    /// migrate`, for a zone it adds, or for every zone when it upgrades to version 6). Waits for the compaction lock
    /// first, so that each row reaches a zone's days exactly once: through this fill while it is below the watermark,
    /// or through a compaction that sees the zone once this transaction has committed.
    static func fill(zones: [String], schema: String, on connection: isolated PostgresConnection) throws {
        guard !zones.isEmpty else { return }
        try connection.query("SELECT pg_advisory_xact_lock(hashtext($1))", [lockKey(schema: schema)])
        let below = try connection.query("SELECT compacted_below::text FROM member_compaction")[0].string(0)
        try numberNewMembers(appendedFrom: "0", below: below, on: connection)
        for zone in zones {
            // A cursor, so that any history is read a slice at a time, days in order: a day's bitmaps are written
            // once its last slice has been read. A cursor's statement takes no parameters; the zone and watermark
            // travel as settings of the transaction.
            try connection.query(
                "SELECT set_config('coworking.fill_zone', $1, true), set_config('coworking.fill_below', $2, true)",
                [zone, below])
            try connection.query(
                """
                DECLARE member_fill NO SCROLL CURSOR FOR
                SELECT day::text, space_id, array_agg(ordinal ORDER BY ordinal)::text,
                       array_agg(visits ORDER BY ordinal)::text
                FROM (
                    SELECT (v.bucket_start AT TIME ZONE current_setting('coworking.fill_zone'))::date AS day,
                           v.space_id, o.ordinal, sum(v.visits)::int AS visits
                    FROM member_visits v JOIN member_ordinals o USING (user_id)
                    WHERE v.appended_by < current_setting('coworking.fill_below')::bigint
                    GROUP BY 1, 2, 3
                ) AS m
                GROUP BY 1, 2 ORDER BY 1
                """)
            var days = MemberDays()
            var lastDay: String?
            while true {
                let slice = try connection.query("FETCH 500 FROM member_fill")
                for row in slice.rows {
                    let day = try row.string(0)
                    // Written a whole day at a time: the day of any space sums the day's spaces.
                    if day != lastDay, days.count >= 500 {
                        try days.write(mergingStored: false, on: connection)
                        days = MemberDays()
                    }
                    lastDay = day
                    try days.add(
                        zone: zone, day: day, spaceID: row.string(1), ordinals: row.string(2), visits: row.string(3))
                }
                if slice.count < 500 { break }
            }
            try days.write(mergingStored: false, on: connection)
            try connection.execute("CLOSE member_fill")
        }
    }

    /// Numbers the members of the rows appended from..<below that have no number yet, in the order they first came.
    private static func numberNewMembers(
        appendedFrom from: String, below: String, on connection: isolated PostgresConnection
    )
        throws
    {
        try connection.query(
            """
            INSERT INTO member_ordinals (user_id, ordinal)
            SELECT user_id, nextval('member_ordinal_numbers')
            FROM (
                SELECT m.user_id, min(m.bucket_start) AS first FROM member_visits m
                WHERE m.appended_by >= $1::bigint AND m.appended_by < $2::bigint
                  AND NOT EXISTS (SELECT FROM member_ordinals o WHERE o.user_id = m.user_id)
                GROUP BY m.user_id ORDER BY first, m.user_id
            ) AS new
            """, [from, below])
    }
}

/// Members' days being built or merged, per zone, local day and space, each with its day of any space (space "").
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

    var count: Int { days.count }

    /// Adds the members of a day and space, given as PostgreSQL prints two int arrays of the same length: their
    /// numbers and their visits.
    mutating func add(zone: String, day: String, spaceID: String, ordinals: String, visits: String) throws {
        let numbers = try Self.integers(ordinals)
        let counts = try Self.integers(visits)
        guard numbers.count == counts.count else {
            throw PostgresError(.unexpectedResult, "a day's members and visits differ in length")
        }
        var space = days[Key(zone: zone, day: day, spaceID: spaceID)] ?? MemberDay()
        var any = days[Key(zone: zone, day: day, spaceID: "")] ?? MemberDay()
        for (ordinal, count) in zip(numbers, counts) {
            space.add(ordinal: ordinal, visits: count)
            any.add(ordinal: ordinal, visits: count)
        }
        days[Key(zone: zone, day: day, spaceID: spaceID)] = space
        days[Key(zone: zone, day: day, spaceID: "")] = any
    }

    /// The integers of an int array in PostgreSQL's text form, `{1,2,3}`.
    static func integers(_ text: String) throws -> [Int32] {
        var values: [Int32] = []
        var value: Int32 = 0
        var digits = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                value = value * 10 + Int32(byte - UInt8(ascii: "0"))
                digits += 1
            case UInt8(ascii: ","), UInt8(ascii: "}"):
                guard digits > 0 else { continue }
                values.append(value)
                (value, digits) = (0, 0)
            case UInt8(ascii: "{"):
                continue
            default:
                throw PostgresError(.unexpectedResult, "not an array of natural numbers")
            }
        }
        return values
    }

    /// Writes the days, in key order, a slice at a time, so that a backlog spread over years holds a slice of the
    /// stored bitmaps in memory at once, not all of them; with `mergingStored`, each is first merged with the stored
    /// one.
    func write(mergingStored: Bool, on connection: isolated PostgresConnection) throws {
        let keys = days.keys.sorted()
        for start in stride(from: 0, to: keys.count, by: 256) {
            try write(keys[start..<min(start + 256, keys.count)], mergingStored: mergingStored, on: connection)
        }
    }

    private func write(_ keys: ArraySlice<Key>, mergingStored: Bool, on connection: isolated PostgresConnection) throws
    {
        var merged: [Key: MemberDay] = [:]
        for key in keys { merged[key] = days[key] }
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
