import Shared
import Testing

/// The members of a day as the compactor stores them and the reports read them: a bitmap over member numbers and the
/// visits beyond the first of those who came more than once.
@Suite("Members' days")
struct MemberDayTests {
    @Test func membersAndTheirVisitsSurviveTheStoredForm() throws {
        var day = MemberDay()
        day.add(ordinal: 0, visits: 1)
        day.add(ordinal: 9, visits: 3)
        day.add(ordinal: 200_000, visits: 1)
        day.add(ordinal: 9, visits: 1)
        #expect(day.memberCount == 3)
        #expect(day.contains(9) && !day.contains(8) && !day.contains(1_000_000))
        #expect(day.presence.count == 25_001, "long enough for the highest number only")
        #expect(day.repeats == [9: 3])
        let stored = try MemberDay(presence: day.presence, encodedRepeats: day.encodedRepeats)
        #expect(stored == day)
        var members: [[Int32]] = []
        stored.forEachMember { members.append([$0, $1]) }
        #expect(members == [[0, 1], [9, 4], [200_000, 1]])
    }

    @Test func aUnionCountsEachMemberOnceAndAddsTheirVisits() {
        var monday = MemberDay()
        monday.add(ordinal: 1, visits: 2)
        monday.add(ordinal: 3, visits: 1)
        var tuesday = MemberDay()
        tuesday.add(ordinal: 3, visits: 1)
        tuesday.add(ordinal: 20, visits: 1)
        var both = monday
        both.formUnion(tuesday)
        #expect(both.memberCount == 3)
        #expect(both.repeats == [1: 1, 3: 1])
        var bits: [UInt8] = []
        MemberDay.union(&bits, monday.presence)
        MemberDay.union(&bits, tuesday.presence)
        #expect(bits == both.presence)
    }

    @Test func aStoredFormThisProgramDidNotWriteIsRefused() {
        #expect(throws: MemberDayError.self) { try MemberDay(presence: [1], encodedRepeats: [0x80]) }
        #expect(throws: MemberDayError.self) {
            try MemberDay(presence: [1], encodedRepeats: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01])
        }
    }
}
