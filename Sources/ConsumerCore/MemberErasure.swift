import PostgresClient

/// `consumer forget-member`: the answer to a member's erasure request. Removes, in one transaction, what identifies
/// the member in the rollups: their line of `user_visits` (`user_activity`: when they joined, how often they came) is
/// deleted, and their members' rows and number are kept under a pseudonym, a negative number that names nobody, so
/// that unique visitors stay exact in every zone and the visits per day and hour stay as they were. A later check-in
/// of the member counts as a new member's.
public struct MemberErasure: Sendable {
    /// What an erasure changed.
    public struct Report: Sendable, Equatable {
        /// `user_activity` rows deleted (0 or 1).
        public var userActivity: Int
        /// The member's 15-minute rows put under the pseudonym: compacted, and not yet compacted.
        public var memberRows: Int
        public var waitingRows: Int
        /// Whether the member had a number, now the pseudonym's.
        public var numbered: Bool

        public init(userActivity: Int, memberRows: Int, waitingRows: Int, numbered: Bool) {
            self.userActivity = userActivity
            self.memberRows = memberRows
            self.waitingRows = waitingRows
            self.numbered = numbered
        }

        /// Whether the rollups held anything of the member.
        public var foundAnything: Bool { userActivity > 0 || memberRows > 0 || waitingRows > 0 || numbered }
    }

    public var schema: String

    public init(schema: String) {
        self.schema = schema
    }

    /// Forgets member `userID`.
    public func forget(_ userID: Int32, on connection: PostgresConnection) async throws -> Report {
        let lock = MemberCompactor.lockKey(schema: schema)
        return try await connection.withTransaction { connection in
            // A compaction in flight would give the member a number again: they take turns.
            try connection.query("SELECT pg_advisory_xact_lock(hashtext($1))", [lock])
            let watermark = try connection.query("SELECT compacted_below::text FROM member_compaction")[0].string(0)
            let rows = try connection.query(
                """
                SELECT count(*) FILTER (WHERE appended_by < $2::bigint), count(*) FILTER (WHERE appended_by >= $2::bigint)
                FROM member_visits WHERE user_id = $1
                """, [userID, watermark])[0]
            let (compacted, waiting) = (try rows.int(0), try rows.int(1))
            // The pseudonym is derived from the member's number, which their rows not compacted yet need too, so
            // that they count as the same member as the compacted days.
            var ordinal = try connection.query("SELECT ordinal FROM member_ordinals WHERE user_id = $1", [userID])
                .rows.first.map { try $0.int(0) }
            let numbered = ordinal != nil
            if ordinal == nil, waiting > 0 {
                ordinal = try connection.query(
                    """
                    INSERT INTO member_ordinals (user_id, ordinal) VALUES ($1, nextval('member_ordinal_numbers'))
                    RETURNING ordinal
                    """, [userID])[0].int(0)
            }
            var report = Report(userActivity: 0, memberRows: compacted, waitingRows: waiting, numbered: numbered)
            if let ordinal {
                let pseudonym = Int32(-(ordinal + 1))
                try connection.query("UPDATE member_visits SET user_id = $2 WHERE user_id = $1", [userID, pseudonym])
                try connection.query("UPDATE member_ordinals SET user_id = $2 WHERE user_id = $1", [userID, pseudonym])
            }
            report.userActivity =
                try connection.query("DELETE FROM user_activity WHERE user_id = $1", [userID]).affectedRows
            return report
        }
    }
}
