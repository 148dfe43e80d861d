import Basics
import Pipeline

/// What a set of newly counted events adds to the rollups, summed in memory so that one transaction writes each
/// rollup row once per batch, in key order.
public struct RollupDelta: Sendable, Equatable {
    /// A 15-minute UTC bucket of one space.
    public struct QuarterHour: Hashable, Sendable, Comparable {
        /// The bucket's start, microseconds since the epoch, a multiple of 15 minutes.
        public var start: Int64
        public var spaceID: String

        public init(start: Int64, spaceID: String) {
            self.start = start
            self.spaceID = spaceID
        }

        public static func < (lhs: QuarterHour, rhs: QuarterHour) -> Bool {
            (lhs.start, lhs.spaceID) < (rhs.start, rhs.spaceID)
        }
    }

    /// A member's visit to a space within a 15-minute UTC bucket: unique visitors of any zone's local days are
    /// counted from these, since every zone's local midnight falls on a quarter hour.
    public struct MemberVisit: Hashable, Sendable, Comparable {
        public var quarterHour: QuarterHour
        public var userID: Int32

        public init(quarterHour: QuarterHour, userID: Int32) {
            self.quarterHour = quarterHour
            self.userID = userID
        }

        public static func < (lhs: MemberVisit, rhs: MemberVisit) -> Bool {
            (lhs.quarterHour, lhs.userID) < (rhs.quarterHour, rhs.userID)
        }
    }

    /// One user's share of the batch.
    public struct UserActivity: Equatable, Sendable {
        public var visits = 0
        public var firstVisit: Timestamp?
        public var lastVisit: Timestamp?
        public var joinedAt: Timestamp?

        public init(
            visits: Int = 0, firstVisit: Timestamp? = nil, lastVisit: Timestamp? = nil, joinedAt: Timestamp? = nil
        ) {
            self.visits = visits
            self.firstVisit = firstVisit
            self.lastVisit = lastVisit
            self.joinedAt = joinedAt
        }
    }

    public private(set) var visits: [QuarterHour: Int] = [:]
    /// Each member's visits to a space within a 15-minute bucket.
    public private(set) var members: [MemberVisit: Int] = [:]
    public private(set) var users: [Int32: UserActivity] = [:]
    public private(set) var checkins = 0
    public private(set) var firstCheckin: Timestamp?
    public private(set) var lastCheckin: Timestamp?

    static let quarterHour: Int64 = 15 * 60 * 1_000_000

    public init(_ events: some Sequence<Event>) {
        // Sized for a batch whose events all differ, so that no row is hashed twice while the tables grow.
        visits.reserveCapacity(events.underestimatedCount)
        members.reserveCapacity(events.underestimatedCount)
        users.reserveCapacity(events.underestimatedCount)
        for event in events {
            switch event.kind {
            case .checkin:
                let start =
                    event.occurredAt.microsecondsSinceEpoch.floorDivided(by: Self.quarterHour).quotient
                    * Self.quarterHour
                let quarterHour = QuarterHour(start: start, spaceID: event.spaceID ?? Event.defaultSpaceID)
                visits[quarterHour, default: 0] += 1
                members[MemberVisit(quarterHour: quarterHour, userID: event.userID), default: 0] += 1
                users[event.userID, default: UserActivity()].record(visitAt: event.occurredAt)
                checkins += 1
                firstCheckin = min(firstCheckin ?? event.occurredAt, event.occurredAt)
                lastCheckin = max(lastCheckin ?? event.occurredAt, event.occurredAt)
            case .userJoined:
                users[event.userID, default: UserActivity()].record(joinedAt: event.occurredAt)
            }
        }
    }
}

extension RollupDelta.UserActivity {
    mutating func record(visitAt instant: Timestamp) {
        visits += 1
        firstVisit = min(firstVisit ?? instant, instant)
        lastVisit = max(lastVisit ?? instant, instant)
    }

    mutating func record(joinedAt instant: Timestamp) {
        joinedAt = min(joinedAt ?? instant, instant)
    }
}
