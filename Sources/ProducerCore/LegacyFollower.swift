import Basics
import Foundation
import Logging
import Pipeline
import PostgresClient

/// Where following the legacy database resumes (`LegacyFollower`): the lowest token and user ids that may still
/// change. Below them, every token was issued and every user joined more than the follow window ago.
public struct LegacyCheckpoint: Codable, Sendable, Equatable {
    public var tokenFloor: Int
    public var userFloor: Int

    public init(tokenFloor: Int, userFloor: Int) {
        self.tokenFloor = tokenFloor
        self.userFloor = userFloor
    }

    /// The checkpoint saved at `path`, or nil when there is none yet.
    public static func read(from path: String) throws -> LegacyCheckpoint? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try JSONDecoder().decode(LegacyCheckpoint.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Saves the checkpoint at `path`, whole or not at all (written beside it, then renamed over it).
    public func write(to path: String) throws {
        let partial = path + ".partial"
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: partial))
        guard rename(partial, path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }
}

extension LegacyBackfill {
    /// The checkpoint of the snapshot `connection` reads in: the first token issued and the first user who joined
    /// within the follow window, or past the last of each.
    func firstCheckpoint(on connection: PostgresConnection) async throws -> LegacyCheckpoint {
        let row = try await connection.query(
            """
            SELECT coalesce((SELECT min(id) FROM tokens WHERE created_at >= (now() AT TIME ZONE $1) - $2::interval),
                            (SELECT coalesce(max(id), 0) + 1 FROM tokens)),
                   coalesce((SELECT min(id) FROM users WHERE joined_at >= (now() AT TIME ZONE $1) - $2::interval),
                            (SELECT coalesce(max(id), 0) + 1 FROM users))
            """, [sourceTimeZone, windowInterval])[0]
        return LegacyCheckpoint(tokenFloor: try row.int(0), userFloor: try row.int(1))
    }

    /// `followWindow` as a PostgreSQL interval.
    var windowInterval: String { "\(followWindow.milliseconds) milliseconds" }
}

/// Keeps publishing what changes in the legacy database after its history (`producer backfill --follow`): new users,
/// and tokens that become used, as the same events with the same ids as the history's, so that an overlap, a restart
/// or the door services' own events later count nothing twice.
///
/// The legacy schema cannot change (no trigger, no column), and its ids are given when a row is inserted, not when its
/// transaction commits, so a poll cannot ask for "the rows since the last poll". Each poll reads instead every token
/// and user from the checkpoint's ids on, through the primary keys, and publishes those not published yet; the
/// checkpoint then moves to the first of them still within the follow window (issued, or joined, less than
/// `LegacyBackfill.followWindow` ago), and never past a row not seen yet. A row escapes only when it changes after
/// the window passed over it: a token used more than the window after it was issued, an insert whose transaction
/// commits more than the window after it began, or a user whose `joined_at` is older than the window when their row
/// commits with an id below the checkpoint. Clock skew between the door services and the legacy database moves only
/// which rows the window holds, by the skew. A token whose `used_at` is rewritten keeps the first time the pipeline
/// counted (its event id is the token's); one whose `used_at` goes back to NULL stays counted: `producer parity` shows
/// both.
public struct LegacyFollower: Sendable {
    public var backfill: LegacyBackfill
    /// How often the legacy database is asked.
    public var interval: Duration

    public init(backfill: LegacyBackfill, interval: Duration = .seconds(1)) {
        self.backfill = backfill
        self.interval = interval
    }

    /// The events of one poll, and the checkpoint once they are published.
    struct Poll {
        var events: [Event]
        var checkpoint: LegacyCheckpoint
        var tokens: [Int]
        var users: [Int]
    }

    /// Follows from `checkpoint` until the task is cancelled: every `interval`, publishes with `publish` what changed,
    /// and hands `saved` each checkpoint whose events before it were all confirmed. `publish` returns whether every
    /// event was; a poll whose events were not all confirmed is done again. A lost connection to the legacy database is
    /// opened again, with backoff.
    public func follow(
        from checkpoint: LegacyCheckpoint, logger: Logger, publish: ([Event]) async throws -> Bool,
        saved: (LegacyCheckpoint) throws -> Void
    ) async throws {
        var checkpoint = checkpoint
        // Ids at or above the checkpoint already published in this run.
        var publishedTokens = Set<Int>()
        var publishedUsers = Set<Int>()
        try await Backoff(initial: .milliseconds(200), maximum: .seconds(5)).retrying(
            isRetriable: { $0 is PostgresError },
            failed: { error, attempt, delay in
                if attempt == 1 {
                    logger.warning(
                        "Could not read the legacy database; retrying",
                        metadata: [LogKey.error: "\(String(reflecting: error))", LogKey.delay: "\(delay)"])
                }
            }
        ) {
            try await PostgresConnection.withConnection(backfill.legacy, logger: logger) { connection in
                while true {
                    let poll = try await self.poll(
                        from: checkpoint, on: connection, skippingTokens: publishedTokens, users: publishedUsers)
                    let confirmed = try await poll.events.isEmpty ? true : publish(poll.events)
                    if confirmed {
                        checkpoint = poll.checkpoint
                        publishedTokens = publishedTokens.union(poll.tokens).filter { $0 >= checkpoint.tokenFloor }
                        publishedUsers = publishedUsers.union(poll.users).filter { $0 >= checkpoint.userFloor }
                        try saved(checkpoint)
                    }
                    try await Task.sleep(for: interval)
                }
            }
        }
    }

    /// What changed from `checkpoint` on, but for the ids already published, and the next checkpoint.
    func poll(
        from checkpoint: LegacyCheckpoint, on connection: PostgresConnection, skippingTokens published: Set<Int>,
        users publishedUsers: Set<Int>
    ) async throws -> Poll {
        let zone = backfill.sourceTimeZone
        let window = backfill.windowInterval
        var result = Poll(events: [], checkpoint: checkpoint, tokens: [], users: [])
        let users = try await connection.query(
            """
            SELECT id, joined_at AT TIME ZONE $1, joined_at >= (now() AT TIME ZONE $1) - $3::interval
            FROM users WHERE id >= $2 ORDER BY id
            """, [zone, checkpoint.userFloor, window])
        var recentUser: Int?
        for row in users.rows {
            let id = try row.int(0)
            if recentUser == nil, try row.bool(2) { recentUser = id }
            guard !publishedUsers.contains(id) else { continue }
            result.events.append(LegacyBackfill.userJoined(id, at: try LegacyBackfill.timestamp(row, 1)))
            result.users.append(id)
        }
        if let last = users.rows.last { result.checkpoint.userFloor = try recentUser ?? (last.int(0) + 1) }
        // The check-in's time is read in the column the history used; a token not used has none yet.
        let tokens = try await connection.query(
            """
            SELECT id, user_id, \(backfill.timeColumn.rawValue) AT TIME ZONE $1, used_at IS NOT NULL,
                created_at >= (now() AT TIME ZONE $1) - $3::interval
            FROM tokens WHERE id >= $2 ORDER BY id
            """, [zone, checkpoint.tokenFloor, window])
        var recentToken: Int?
        for row in tokens.rows {
            let id = try row.int(0)
            if recentToken == nil, try row.bool(4) { recentToken = id }
            guard try row.bool(3), !published.contains(id) else { continue }
            result.events.append(
                LegacyBackfill.checkin(id, user: try row.int(1), at: try LegacyBackfill.timestamp(row, 2)))
            result.tokens.append(id)
        }
        if let last = tokens.rows.last { result.checkpoint.tokenFloor = try recentToken ?? (last.int(0) + 1) }
        return result
    }
}
