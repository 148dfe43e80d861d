import Testing

@testable import AMQPClient

@Suite("Publisher confirm tracking")
struct ConfirmTrackerTests {
    @Test func singleAndMultipleSettlementsMatchByTag() {
        var tracker = ConfirmTracker()
        for sequence in UInt64(1)...6 { tracker.add(sequence: sequence, index: Int(sequence) * 10) }
        #expect(tracker.settle(tag: 3, multiple: false) == [30])
        #expect(tracker.settle(tag: 3, multiple: false) == [], "a tag settles once")
        #expect(tracker.settle(tag: 4, multiple: true) == [10, 20, 40])
        #expect(tracker.count == 2)
        #expect(Array(tracker.indices) == [50, 60])
        #expect(tracker.settle(tag: 9, multiple: true) == [50, 60])
        #expect(tracker.count == 0)
    }

    @Test func outOfOrderSingleAcks() {
        var tracker = ConfirmTracker()
        for sequence in UInt64(10)...14 { tracker.add(sequence: sequence, index: Int(sequence)) }
        #expect(tracker.settle(tag: 14, multiple: false) == [14])
        #expect(tracker.settle(tag: 11, multiple: false) == [11])
        #expect(tracker.settle(tag: 12, multiple: true) == [10, 12])
        #expect(Array(tracker.indices) == [13])
    }
}
