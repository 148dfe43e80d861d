import Foundation
import Shared

/// How a batch was counted.
public struct FoldResult: Sendable, Equatable {
    /// Events counted for the first time.
    public var counted: Int
    /// Events whose id was counted before (or earlier in the same batch): counted as nothing.
    public var duplicates: Int

    public init(counted: Int, duplicates: Int) {
        self.counted = counted
        self.duplicates = duplicates
    }
}

/// The statements that fold a batch of events into the rollups, inside the caller's transaction.
///
/// Every transaction touches the tables in one order (`counted_events`, `visits_quarter_hour`, `visits_daily`,
/// `visits_hourly`, `user_activity`, `fold_totals`) and each table's rows in key order, so replicas folding at
/// the same time wait for one another at worst, and never deadlock.
public struct RollupWriter: Sendable {
    /// The row of `fold_totals` this consumer adds to; spreading replicas over rows keeps them from queueing on
    /// one row.
    public var totalsSlot: Int

    public static let totalsSlots = 16

    public init(totalsSlot: Int = Int.random(in: 0..<RollupWriter.totalsSlots)) {
        self.totalsSlot = totalsSlot
    }

    /// Counts the events of `events` whose id was never counted, and adds them to every rollup.
    public func fold(_ events: [Event], on connection: isolated PostgresConnection) throws -> FoldResult {
        var seen = Set<UUID>(minimumCapacity: events.count)
        let unique = events.filter { seen.insert($0.id).inserted }
        guard !unique.isEmpty else { return FoldResult(counted: 0, duplicates: events.count) }

        let inserted = try connection.query(
            """
            INSERT INTO counted_events (event_id)
            SELECT id FROM unnest($1::uuid[]) AS batch(id) ORDER BY id
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """, [unique.map(\.id)])
        var new = Set<UUID>(minimumCapacity: inserted.count)
        for row in inserted.rows {
            if let id = UUID(uuidString: try row.string(0)) { new.insert(id) }
        }
        let counted = unique.filter { new.contains($0.id) }
        let result = FoldResult(counted: counted.count, duplicates: events.count - counted.count)
        guard !counted.isEmpty else { return result }

        let delta = RollupDelta(counted)
        try writeVisits(delta, on: connection)
        try writeUsers(delta, on: connection)
        try connection.query(
            """
            INSERT INTO fold_totals AS t (slot, checkins, first_checkin_at, last_checkin_at, last_folded_at)
            VALUES ($1, $2, $3, $4, clock_timestamp())
            ON CONFLICT (slot) DO UPDATE SET
                checkins = t.checkins + excluded.checkins,
                first_checkin_at = least(t.first_checkin_at, excluded.first_checkin_at),
                last_checkin_at = greatest(t.last_checkin_at, excluded.last_checkin_at),
                last_folded_at = greatest(t.last_folded_at, excluded.last_folded_at)
            """, [totalsSlot, delta.checkins, delta.firstCheckin, delta.lastCheckin])
        return result
    }

    private func writeVisits(_ delta: RollupDelta, on connection: isolated PostgresConnection) throws {
        guard !delta.visits.isEmpty else { return }
        let buckets = delta.visits.sorted { $0.key < $1.key }
        let parameters: [(any PostgresEncodable)?] = [
            buckets.map { Timestamp(microsecondsSinceEpoch: $0.key.start) }, buckets.map(\.key.spaceID),
            buckets.map { Int64($0.value) },
        ]
        try connection.query(
            """
            INSERT INTO visits_quarter_hour AS v (bucket_start, space_id, visits)
            SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) ORDER BY 1, 2
            ON CONFLICT (bucket_start, space_id) DO UPDATE SET visits = v.visits + excluded.visits
            """, parameters)
        // Every zone of report_zones is folded here. `consumer migrate` fills a new zone while it holds a lock
        // that the statement above waits for, so each visit reaches a new zone's rows exactly once.
        try connection.query(
            """
            INSERT INTO visits_daily AS d (zone, day, space_id, visits)
            SELECT z.zone, (b.bucket AT TIME ZONE z.zone)::date, b.space_id, sum(b.visits)
            FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) AS b(bucket, space_id, visits)
            CROSS JOIN report_zones z
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (zone, day, space_id) DO UPDATE SET visits = d.visits + excluded.visits
            """, parameters)
        try connection.query(
            """
            INSERT INTO visits_hourly AS h (zone, day, hour, space_id, visits)
            SELECT z.zone, local.at::date, extract(hour FROM local.at)::smallint, b.space_id, sum(b.visits)
            FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) AS b(bucket, space_id, visits)
            CROSS JOIN report_zones z
            CROSS JOIN LATERAL (SELECT b.bucket AT TIME ZONE z.zone AS at) AS local
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (zone, day, hour, space_id) DO UPDATE SET visits = h.visits + excluded.visits
            """, parameters)
    }

    private func writeUsers(_ delta: RollupDelta, on connection: isolated PostgresConnection) throws {
        let users = delta.users.sorted { $0.key < $1.key }
        try connection.query(
            """
            INSERT INTO user_activity AS u (user_id, visits, first_visit_at, last_visit_at, joined_at)
            SELECT * FROM unnest($1::int[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
            ORDER BY 1
            ON CONFLICT (user_id) DO UPDATE SET
                visits = u.visits + excluded.visits,
                first_visit_at = least(u.first_visit_at, excluded.first_visit_at),
                last_visit_at = greatest(u.last_visit_at, excluded.last_visit_at),
                joined_at = least(u.joined_at, excluded.joined_at)
            """,
            [
                users.map(\.key), users.map { Int64($0.value.visits) }, users.map(\.value.firstVisit),
                users.map(\.value.lastVisit), users.map(\.value.joinedAt),
            ])
    }
}
