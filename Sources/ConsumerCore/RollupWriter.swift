import Basics
import Foundation
import Pipeline
import PostgresClient

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
/// Every transaction touches the tables in one order (`counted_events`, `visits_quarter_hour`,
/// `visits_local_day`, `member_visits`, `user_activity`, `fold_totals`) and each table's rows in key order, so
/// replicas folding at the same time wait for one another at worst, and never deadlock (`member_visits`, which has
/// no key, is only appended to; `MemberCompactor` reads its new rows later, outside the folds).
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
        try fold(prepare(events), on: connection)
    }

    /// Does the part of a fold that needs no database: for the usual case where every id is new, sums the
    /// rollup rows and encodes the statements' parameters. The consumer calls it while the batch before is still
    /// committing, so the connection's thread spends its time on the statements.
    public func prepare(_ events: [Event]) -> PreparedFold {
        PreparedFold(
            events: events, ids: events.map(\.id).postgresParameter,
            occurred: events.map(\.occurredAt).postgresParameter,
            rowsIfAllNew: FoldRows(RollupDelta(events), totalsSlot: totalsSlot))
    }

    /// Counts the events of `prepared` whose id was never counted, and adds them to every rollup.
    public func fold(_ prepared: PreparedFold, on connection: isolated PostgresConnection) throws -> FoldResult {
        guard !prepared.events.isEmpty else { return FoldResult(counted: 0, duplicates: 0) }
        // How many ids were new, and which, unless all were: the usual case needs no list. An id the batch
        // repeats is new once at most, like one counted before.
        let inserted = try connection.query(
            "SELECT counted, counted_id FROM count_events($1, $2)", [prepared.ids, prepared.occurred])
        let rows: FoldRows
        let counted: Int
        if try inserted[0].int(0) == prepared.events.count {
            (rows, counted) = (prepared.rowsIfAllNew, prepared.events.count)
        } else {
            var new = Set<UUID>(minimumCapacity: inserted.count)
            for row in inserted.rows {
                if let text = row[1], let id = UUID(text: text) { new.insert(id) }
            }
            // The first event of each new id: removing it counts its repeats as duplicates.
            let events = prepared.events.filter { new.remove($0.id) != nil }
            (rows, counted) = (FoldRows(RollupDelta(events), totalsSlot: totalsSlot), events.count)
        }
        let result = FoldResult(counted: counted, duplicates: prepared.events.count - counted)
        guard counted > 0 else { return result }

        if let visits = rows.visits {
            try connection.query(
                """
                INSERT INTO visits_quarter_hour AS v (bucket_start, space_id, visits)
                SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) ORDER BY 1, 2
                ON CONFLICT (bucket_start, space_id) DO UPDATE SET visits = v.visits + excluded.visits
                """, visits)
            // Every zone of report_zones is folded here. `consumer migrate` fills a new zone while it holds a
            // lock that the statement above waits for, so each visit reaches a new zone's rows exactly once.
            try connection.query(Self.localDaysSQL, visits)
        }
        if let members = rows.members {
            try connection.query(
                """
                INSERT INTO member_visits (bucket_start, space_id, user_id, visits, appended_by)
                SELECT *, (SELECT pg_current_xact_id()::text::bigint)
                FROM unnest($1::timestamptz[], $2::text[], $3::int[], $4::int[])
                """, members)
        }
        // A user whose visits after the update are the batch's own had none before.
        let firstVisitors = try connection.query(
            """
            WITH batch AS (
                SELECT * FROM unnest($1::int[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
                    AS b(user_id, visits, first_visit_at, last_visit_at, joined_at)
            ), written AS (
                INSERT INTO user_activity AS u (user_id, visits, first_visit_at, last_visit_at, joined_at)
                SELECT * FROM batch ORDER BY 1
                ON CONFLICT (user_id) DO UPDATE SET
                    visits = u.visits + excluded.visits,
                    first_visit_at = least(u.first_visit_at, excluded.first_visit_at),
                    last_visit_at = greatest(u.last_visit_at, excluded.last_visit_at),
                    joined_at = least(u.joined_at, excluded.joined_at)
                RETURNING u.user_id, u.visits
            )
            SELECT count(*) FROM written JOIN batch USING (user_id)
            WHERE written.visits > 0 AND written.visits = batch.visits
            """, rows.users)[0].int(0)
        try connection.query(
            """
            INSERT INTO fold_totals AS t (slot, checkins, users, first_checkin_at, last_checkin_at, last_folded_at, folds)
            VALUES ($1, $2, $3, $4, $5, clock_timestamp(), 1)
            ON CONFLICT (slot) DO UPDATE SET
                folds = t.folds + 1,
                checkins = t.checkins + excluded.checkins,
                users = t.users + excluded.users,
                first_checkin_at = least(t.first_checkin_at, excluded.first_checkin_at),
                last_checkin_at = greatest(t.last_checkin_at, excluded.last_checkin_at),
                last_folded_at = greatest(t.last_folded_at, excluded.last_folded_at)
            """, rows.totals(firstVisitors: firstVisitors))
        return result
    }

    /// Each bucket's local day and hour are computed once, in the subquery (OFFSET 0 keeps the planner from
    /// inlining it into each of the 24 hour sums, which took twice as long).
    private static let localDaysSQL = """
        INSERT INTO visits_local_day AS d (zone, day, space_id, visits, \(HourColumns.list))
        SELECT zone, day, space_id, sum(visits), \(HourColumns.sums(of: "visits", byHour: "hour"))
        FROM (
            SELECT z.zone, local.at::date AS day, date_part('hour', local.at)::int AS hour, b.space_id, b.visits
            FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) AS b(bucket, space_id, visits)
            CROSS JOIN report_zones z
            CROSS JOIN LATERAL (SELECT b.bucket AT TIME ZONE z.zone AS at) AS local
            OFFSET 0
        ) AS batch
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (zone, day, space_id) DO UPDATE SET
            visits = d.visits + excluded.visits,
            \(HourColumns.names.map { "\($0) = d.\($0) + excluded.\($0)" }.joined(separator: ", "))
        """
}

/// A batch ready for its transaction (`RollupWriter.prepare(_:)`).
public struct PreparedFold: Sendable {
    /// Events in the batch as received, repeated ids included.
    let events: [Event]
    let ids: PostgresParameter
    /// When each event occurred, beside its id.
    let occurred: PostgresParameter
    let rowsIfAllNew: FoldRows
}

/// The parameters of the fold's statements for one set of newly counted events, each rollup's rows in key order.
struct FoldRows: Sendable {
    /// Bucket starts, spaces and visits of the 15-minute rows; nil when the events hold no check-in.
    var visits: [PostgresParameter]?
    /// Bucket starts, spaces, members and visits of the members' visits, in bucket order (the order the BRIN index
    /// of `member_visits` keeps ranges of); nil when the events hold no check-in.
    var members: [PostgresParameter]?
    /// Ids, visits, first and last visits and join times of the users.
    var users: [PostgresParameter]
    var totalsSlot: Int
    var checkins: Int
    var firstCheckin: Timestamp?
    var lastCheckin: Timestamp?

    init(_ delta: RollupDelta, totalsSlot: Int) {
        if delta.visits.isEmpty {
            (visits, members) = (nil, nil)
        } else {
            let buckets = delta.visits.sorted { $0.key < $1.key }
            visits = [
                buckets.map { Timestamp(microsecondsSinceEpoch: $0.key.start) }.postgresParameter,
                buckets.map(\.key.spaceID).postgresParameter, buckets.map { Int64($0.value) }.postgresParameter,
            ]
            let visitors = delta.members.sorted { $0.key < $1.key }
            members = [
                visitors.map { Timestamp(microsecondsSinceEpoch: $0.key.quarterHour.start) }.postgresParameter,
                visitors.map(\.key.quarterHour.spaceID).postgresParameter, visitors.map(\.key.userID).postgresParameter,
                visitors.map { Int32($0.value) }.postgresParameter,
            ]
        }
        // Sorting the ids alone and looking each up cost a third of sorting the (id, activity) pairs.
        let userIDs = delta.users.keys.sorted()
        let users = userIDs.map { delta.users[$0] ?? RollupDelta.UserActivity() }
        self.users = [
            userIDs.postgresParameter, users.map { Int64($0.visits) }.postgresParameter,
            users.map(\.firstVisit).postgresParameter, users.map(\.lastVisit).postgresParameter,
            users.map(\.joinedAt).postgresParameter,
        ]
        self.totalsSlot = totalsSlot
        checkins = delta.checkins
        firstCheckin = delta.firstCheckin
        lastCheckin = delta.lastCheckin
    }

    func totals(firstVisitors: Int) -> [(any PostgresEncodable)?] {
        [totalsSlot, checkins, firstVisitors, firstCheckin, lastCheckin]
    }
}
