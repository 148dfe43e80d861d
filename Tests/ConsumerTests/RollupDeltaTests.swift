import Basics
import ConsumerCore
import Foundation
import Pipeline
import Testing

@Suite("Rollup deltas of a batch")
struct RollupDeltaTests {
    static func checkin(_ user: Int32, _ at: Timestamp, space: String? = nil) -> Event {
        Event(id: UUID(), kind: .checkin, userID: user, occurredAt: at, spaceID: space)
    }

    @Test func checkinsFallIntoTheirQuarterHourAndSpace() {
        let t = { (hour: Int, minute: Int, second: Int, micro: Int) in
            Timestamp(year: 2023, month: 3, day: 12, hour: hour, minute: minute, second: second, microsecond: micro)
        }
        let delta = RollupDelta([
            Self.checkin(1, t(6, 59, 59, 999_999)), Self.checkin(2, t(7, 0, 0, 0)),
            Self.checkin(1, t(7, 14, 59, 999_999)),
            Self.checkin(3, t(7, 15, 0, 0), space: "annex"), Self.checkin(3, t(7, 15, 0, 1)),
        ])
        let start = { (hour: Int, minute: Int) in t(hour, minute, 0, 0).microsecondsSinceEpoch }
        #expect(
            delta.visits == [
                .init(start: start(6, 45), spaceID: "default"): 1, .init(start: start(7, 0), spaceID: "default"): 2,
                .init(start: start(7, 15), spaceID: "annex"): 1, .init(start: start(7, 15), spaceID: "default"): 1,
            ])
        #expect(delta.checkins == 5)
        #expect(delta.firstCheckin == t(6, 59, 59, 999_999))
        #expect(delta.lastCheckin == t(7, 15, 0, 1))
        #expect(delta.users[1]?.visits == 2)
        #expect(delta.users[1]?.firstVisit == t(6, 59, 59, 999_999))
        #expect(delta.users[1]?.lastVisit == t(7, 14, 59, 999_999))
        #expect(delta.users[1]?.joinedAt == nil)
    }

    @Test func theEarliestJoinStandsAndJoinsAreNoVisits() {
        let early = Timestamp(year: 2023, month: 1, day: 20)
        let late = Timestamp(year: 2023, month: 2, day: 1)
        let delta = RollupDelta([
            Event(id: UUID(), kind: .userJoined, userID: 9, occurredAt: late),
            Event(id: UUID(), kind: .userJoined, userID: 9, occurredAt: early),
        ])
        #expect(delta.users[9] == RollupDelta.UserActivity(visits: 0, joinedAt: early))
        #expect(delta.checkins == 0)
        #expect(delta.visits.isEmpty)
        #expect(delta.firstCheckin == nil)
    }
}
