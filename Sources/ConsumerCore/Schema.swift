/// One step of the database schema, applied once, in order of `version`.
struct Migration: Sendable {
    let version: Int
    let description: String
    let sql: String
}

/// The schema of the rollups, oldest step first. A released step never changes: a change is a new step.
///
/// Every report reads pre-aggregated rows (CONTRACT §3):
/// - `visits_quarter_hour`: visits per 15-minute UTC bucket and space, the exact source for any time zone,
///   because since 2000 every zone's offset and every daylight-saving change falls on a quarter hour;
/// - `visits_daily`, `visits_hourly`: visits per local day (and hour) and space for each zone of `report_zones`;
/// - `user_activity`: per user, visits, first and last visit, and `joined_at`;
/// - `fold_totals`: the summary's totals, over a few rows so that replicas seldom wait for one another;
/// - `counted_events`: the id of every event counted, the key that makes a redelivery count nothing.
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
            """)
]
