import Pipeline

/// One step of the database schema, applied once, in order of `version`.
struct Migration: Sendable {
    let version: Int
    let description: String
    let sql: String
}

/// The schema of the rollups, oldest step first. A released step never changes: a change is a new step.
///
/// Every report reads pre-aggregated rows (docs/architecture.md, "The schema and why"):
/// - `visits_quarter_hour`: visits per 15-minute UTC bucket and space, the exact source for any time zone,
///   because since 2000 every zone's offset and every daylight-saving change falls on a quarter hour;
/// - `visits_local_day`: visits per local day and space for each zone of `report_zones`, and per local hour in
///   the columns `h00` to `h23` (version 2; version 1 kept days and hours in `visits_daily` and `visits_hourly`);
/// - `user_activity`: per user, visits, first and last visit, and `joined_at`;
/// - `fold_totals`: the summary's totals, over a few rows so that replicas seldom wait for one another, and the
///   count of folds, the rollups' version (version 4), whose every change is signalled on `coworking_folds`;
/// - `member_visits`: each member's visits to a space per 15-minute UTC bucket (version 5, with their number and the
///   transaction that appended them since version 6), for unique visitors and top members in any zone;
/// - `member_days`, `member_ordinals`, `member_compaction` (version 6): `MemberCompactor` folds the members' rows
///   into each folded zone's `member_days`, a bitmap of the members of each local day over the dense numbers of
///   `member_ordinals`, and records how far it got in `member_compaction`;
/// - `counted_events`: the id of every event counted (and since version 7 when it occurred), the key that makes a
///   redelivery count nothing.
let migrations: [Migration] = [
    Migration(
        version: 1, description: "rollup tables",
        sql: """
            CREATE TABLE counted_events (
                event_id uuid PRIMARY KEY
            );

            CREATE TABLE visits_quarter_hour (
                bucket_start timestamptz NOT NULL CHECK (date_bin('15 minutes', bucket_start, 'epoch') = bucket_start),
                space_id text NOT NULL,
                visits bigint NOT NULL,
                PRIMARY KEY (bucket_start, space_id)
            );

            CREATE TABLE report_zones (
                zone text PRIMARY KEY,
                ready boolean NOT NULL DEFAULT false,
                filled_at timestamptz
            );

            CREATE TABLE visits_daily (
                zone text NOT NULL,
                day date NOT NULL,
                space_id text NOT NULL,
                visits bigint NOT NULL,
                PRIMARY KEY (zone, day, space_id)
            );

            CREATE TABLE visits_hourly (
                zone text NOT NULL,
                day date NOT NULL,
                hour smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
                space_id text NOT NULL,
                visits bigint NOT NULL,
                PRIMARY KEY (zone, day, hour, space_id)
            );

            CREATE TABLE user_activity (
                user_id integer PRIMARY KEY CHECK (user_id > 0),
                visits bigint NOT NULL DEFAULT 0,
                first_visit_at timestamptz,
                last_visit_at timestamptz,
                joined_at timestamptz
            );
            CREATE INDEX user_activity_visited ON user_activity (user_id) WHERE visits > 0;

            CREATE TABLE fold_totals (
                slot smallint PRIMARY KEY,
                checkins bigint NOT NULL DEFAULT 0,
                first_checkin_at timestamptz,
                last_checkin_at timestamptz,
                last_folded_at timestamptz
            );
            """),
    Migration(
        version: 2, description: "hours as columns of the local day; users counted in fold_totals",
        sql: """
            CREATE TABLE visits_local_day (
                zone text NOT NULL,
                day date NOT NULL,
                space_id text NOT NULL,
                visits bigint NOT NULL,
                \(HourColumns.definitions),
                PRIMARY KEY (zone, day, space_id)
            ) WITH (fillfactor = 50);
            INSERT INTO visits_local_day (zone, day, space_id, visits, \(HourColumns.list))
            SELECT zone, day, space_id, sum(visits),
                   \(HourColumns.sums(of: "visits", byHour: "hour"))
            FROM visits_hourly GROUP BY zone, day, space_id;
            DROP TABLE visits_daily, visits_hourly;

            -- Counting the users with a visit as the folds make them lets the summary read one number, and with
            -- no index on `visits` left, updating a user is a heap-only update that touches no index.
            ALTER TABLE fold_totals ADD COLUMN users bigint NOT NULL DEFAULT 0;
            INSERT INTO fold_totals AS t (slot, users)
            SELECT 0, count(*) FROM user_activity WHERE visits > 0 HAVING count(*) > 0
            ON CONFLICT (slot) DO UPDATE SET users = excluded.users;
            DROP INDEX user_activity_visited;

            -- Room on each page for the next version of a row, so that an update stays on its page.
            ALTER TABLE user_activity SET (fillfactor = 70);
            ALTER TABLE visits_quarter_hour SET (fillfactor = 70);
            """),
    Migration(
        version: 3, description: "a batch's ids counted without a conflict check per id",
        sql: """
            -- Counts the ids of `ids` (distinct) that were never counted, in id order. It returns one row
            -- (the count, null) when all were new; otherwise the count of new ids and each of them, or (0, null).
            -- The usual case, all new, is a plain insert: checking each id for a conflict first, as
            -- ON CONFLICT does, took 75 % longer. A counted id fails it with unique_violation, handled here,
            -- so the server logs no error, and the ids are counted again with that check.
            CREATE FUNCTION count_new_events(ids uuid[]) RETURNS TABLE (counted bigint, counted_id uuid)
            LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
            BEGIN
                INSERT INTO counted_events (event_id) SELECT id FROM unnest(ids) AS batch(id) ORDER BY id;
                RETURN QUERY SELECT cardinality(ids)::bigint, NULL::uuid;
            EXCEPTION WHEN unique_violation THEN
                RETURN QUERY
                    WITH inserted AS (
                        INSERT INTO counted_events (event_id) SELECT id FROM unnest(ids) AS batch(id) ORDER BY id
                        ON CONFLICT DO NOTHING
                        RETURNING event_id
                    ), total AS (
                        SELECT count(*) AS new FROM inserted
                    )
                    SELECT total.new, inserted.event_id FROM total LEFT JOIN inserted ON true;
            END
            $$;
            """),
    Migration(
        version: 4, description: "the rollups' version, and a signal at each fold's commit",
        sql: """
            -- A fold that counts anything adds one to its slot's count: the sum is the version of the rollups, which
            -- the report API's answers carry as their ETag, and which grows with every commit, whatever order
            -- replicas commit in.
            ALTER TABLE fold_totals ADD COLUMN folds bigint NOT NULL DEFAULT 0;
            -- Tells listeners (the report API's caches) that the rollups changed, on channel coworking_folds with
            -- the schema as payload. PostgreSQL delivers a notification at the commit of its transaction, and
            -- never for one rolled back.
            CREATE FUNCTION notify_fold() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('coworking_folds', TG_TABLE_SCHEMA);
                RETURN NULL;
            END
            $$;
            CREATE TRIGGER fold_committed AFTER INSERT OR UPDATE ON fold_totals
                FOR EACH STATEMENT EXECUTE FUNCTION notify_fold();
            """),
    Migration(
        version: 5, description: "members' visits, for unique visitors",
        sql: """
            -- Each member's visits to a space per 15-minute UTC bucket, as each fold counts them: unique visitors of
            -- any zone's local days are the distinct members of the rows between its midnights, which fall on quarter
            -- hours. Distinct counts cannot be summed from other rows, so a member's row is kept; a member who came
            -- twice in a bucket, in two batches, has two rows, which change no distinct count. No key and no B-tree:
            -- each insert is an append, where a unique index put each row on a random page of a large B-tree and
            -- cost 40 % of the consumer's throughput. The BRIN index keeps a summary per range of pages, cheap to update, which lets a range of days
            -- skip the pages of other days while check-ins arrive in about their order.
            CREATE TABLE member_visits (
                bucket_start timestamptz NOT NULL,
                space_id text NOT NULL,
                user_id integer NOT NULL
            );
            CREATE INDEX member_visits_bucket ON member_visits USING brin (bucket_start);

            -- A consumer older than version 5 would fold without members: with the function it counts ids with
            -- renamed, it stops at its next batch, which stays queued, instead of folding on.
            ALTER FUNCTION count_new_events(uuid[]) RENAME TO count_new_ids;
            """),
    Migration(
        version: 6, description: "members' days compacted per zone, for unique visitors and top members",
        sql: """
            -- How many visits each row stands for, so that top members counts visits, not quarter hours. Rows of
            -- earlier versions stand for one.
            ALTER TABLE member_visits ADD COLUMN visits integer NOT NULL DEFAULT 1;
            -- The transaction that appended each row. MemberCompactor folds into member_days, outside the folds'
            -- transactions, the rows of the transactions that ended since its last run: those appended by a
            -- transaction below the oldest one still running (the xmin of its snapshot), which no later commit can
            -- add to. Rows of earlier versions are 0, below the first watermark: the migration compacts them.
            -- The transaction's 64-bit id (xid8) as a bigint, which BRIN can index; a fold gives it once per
            -- statement.
            ALTER TABLE member_visits ADD COLUMN appended_by bigint NOT NULL DEFAULT 0;
            ALTER TABLE member_visits ALTER COLUMN appended_by DROP DEFAULT;
            -- Rows are appended in about the order of their transactions: a summary per range of pages finds the
            -- new ones, and costs the fold next to nothing.
            CREATE INDEX member_visits_appended ON member_visits USING brin (appended_by);
            -- The watermark: every row appended by a transaction below it is in member_days. Reports read
            -- member_days, and the rows at or above it, in one snapshot.
            CREATE TABLE member_compaction (
                compacted_below bigint NOT NULL
            );
            INSERT INTO member_compaction VALUES (1);

            -- Members numbered densely as they first appear, so that a day's members are a bitmap of a few KB.
            CREATE TABLE member_ordinals (
                user_id integer PRIMARY KEY,
                ordinal integer NOT NULL UNIQUE CHECK (ordinal >= 0)
            );
            CREATE SEQUENCE member_ordinal_numbers MINVALUE 0 START 0;

            -- For each zone of report_zones and local day, the members who came to each space, and to any space
            -- (space_id ''): bit n of the bitmap set when member n came, and the visits beyond the first of those
            -- who came more than once (MemberDay). A year of unique visitors or top members reads 365 rows.
            CREATE TABLE member_days (
                zone text NOT NULL,
                day date NOT NULL,
                space_id text NOT NULL,
                members bytea NOT NULL,
                repeats bytea NOT NULL,
                PRIMARY KEY (zone, day, space_id)
            );

            -- A consumer older than version 6 would append rows without their visits.
            ALTER FUNCTION count_new_ids(uuid[]) RENAME TO count_event_ids;
            """),
    Migration(
        version: 7, description: "when each counted event occurred, so that ids past a horizon can be let go",
        sql: """
            -- DEDUP_HORIZON_DAYS lets ids go once their event occurred longer ago than the horizon, and the consumer
            -- refuses events older than it. Ids counted before version 7 take the time of the upgrade: they go a
            -- horizon after it, when an event that old is refused anyway. A constant default: no table rewrite.
            ALTER TABLE counted_events ADD COLUMN occurred_at timestamptz NOT NULL DEFAULT now();
            ALTER TABLE counted_events ALTER COLUMN occurred_at DROP DEFAULT;
            -- Ids arrive in about the order their events occurred: a summary per range of pages, cheap to keep.
            CREATE INDEX counted_events_occurred ON counted_events USING brin (occurred_at);

            -- As count_event_ids, with the times; a consumer older than version 7 stops at the old name's absence.
            DROP FUNCTION count_event_ids(uuid[]);
            CREATE FUNCTION count_events(ids uuid[], occurred timestamptz[])
            RETURNS TABLE (counted bigint, counted_id uuid)
            LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
            BEGIN
                INSERT INTO counted_events (event_id, occurred_at)
                SELECT id, at FROM unnest(ids, occurred) AS batch(id, at) ORDER BY id;
                RETURN QUERY SELECT cardinality(ids)::bigint, NULL::uuid;
            EXCEPTION WHEN unique_violation THEN
                RETURN QUERY
                    WITH inserted AS (
                        INSERT INTO counted_events (event_id, occurred_at)
                        SELECT id, at FROM unnest(ids, occurred) AS batch(id, at) ORDER BY id
                        ON CONFLICT DO NOTHING
                        RETURNING event_id
                    ), total AS (
                        SELECT count(*) AS new FROM inserted
                    )
                    SELECT total.new, inserted.event_id FROM total LEFT JOIN inserted ON true;
            END
            $$;
            """),
]

extension HourColumns {
    /// The hour columns of a CREATE TABLE, each a count that starts at zero.
    static let definitions = names.map { "\($0) bigint NOT NULL DEFAULT 0" }.joined(separator: ", ")

    /// The select list that sums `value` into the hour column of `hour` (an expression of 0 to 23), in column
    /// order, for an INSERT into the hour columns from rows grouped by day.
    static func sums(of value: String, byHour hour: String) -> String {
        names.indices.map { "coalesce(sum(\(value)) FILTER (WHERE \(hour) = \($0)), 0)" }.joined(separator: ", ")
    }
}
