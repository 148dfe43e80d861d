import Pipeline
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
        // A distance of zero (number -1, then a number twice), and repeats of a member the bitmap does not hold:
        // number 1 (bit 1 of byte 0 is clear), then number 9 (past it).
        #expect(throws: MemberDayError.self) { try MemberDay(presence: [1], encodedRepeats: [0, 1]) }
        #expect(throws: MemberDayError.self) { try MemberDay(presence: [3], encodedRepeats: [1, 1, 0, 1]) }
        #expect(throws: MemberDayError.self) { try MemberDay(presence: [1], encodedRepeats: [2, 1]) }
        #expect(throws: MemberDayError.self) { try MemberDay(presence: [1], encodedRepeats: [10, 1]) }
        var visits: [Int32] = [0, 0, 0, 0, 0, 0, 0, 0]
        #expect(throws: MemberDayError.self) {
            try MemberDay.forEachRepeat(in: [1, 2, 9, 1], of: [1]) { visits[Int($0)] += $1 }
        }
        #expect(visits == [2, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func aDaysVisitsAddUpOneBitAtATime() throws {
        var day = MemberDay()
        day.add(ordinal: 0, visits: 3)
        day.add(ordinal: 9, visits: 1)
        day.add(ordinal: 15, visits: 2)
        var visits = [Int32](repeating: 0, count: 16)
        day.addVisits(to: &visits)
        #expect(visits == [3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2])
        #expect(MemberDay.count(day.presence) == 3)
        var stored = [Int32](repeating: 0, count: 16)
        MemberDay.addPresence(day.presence, to: &stored)
        try MemberDay.forEachRepeat(in: day.encodedRepeats, of: day.presence) { stored[Int($0)] += $1 }
        #expect(stored == visits)
    }
}
