import Testing

@testable import ConsumerCore

@Suite("The consumer's acknowledgements and batches, without a broker")
struct DeliveryWindowTests {
    @Test func aBatchIsAcknowledgedOnlyOnceEveryEarlierOneCommitted() {
        var window = DeliveryWindow()
        let first = window.open(tags: [1, 2, 3])
        let second = window.open(tags: [4, 5])
        let third = window.open(tags: [6])
        #expect(window.unacknowledged == 6)
        // The later folds commit first: no multiple-ack may reach past the first batch, which has not.
        #expect(window.commit(third) == nil)
        #expect(window.commit(second) == nil)
        #expect(window.unacknowledged == 6)
        // The first commits: one multiple-ack covers all three.
        #expect(window.commit(first) == 6)
        #expect(window.unacknowledged == 0)
        #expect(window.isEmpty)
    }

    @Test func inOrderCommitsAreAcknowledgedOneByOne() {
        var window = DeliveryWindow()
        let first = window.open(tags: [10, 11])
        let second = window.open(tags: [12, 13])
        #expect(window.commit(first) == 11)
        #expect(window.unacknowledged == 2)
        #expect(window.commit(second) == 13)
        #expect(window.isEmpty)
    }

    @Test func aMultipleAckNeverNamesADeliverySettledOtherwise() {
        var window = DeliveryWindow()
        let first = window.open(tags: [1, 2, 3])
        // The last delivery's dead letter was not confirmed: it was requeued, and the broker no longer holds it for
        // this consumer.
        window.settle(3, in: first)
        window.settle(3, in: first)
        window.settle(99, in: first)
        #expect(window.unacknowledged == 2)
        #expect(window.commit(first) == 2)

        let everyOneRequeued = window.open(tags: [4])
        window.settle(4, in: everyOneRequeued)
        #expect(window.commit(everyOneRequeued) == nil)
        #expect(window.isEmpty)
        #expect(window.unacknowledged == 0)
    }

    @Test func anAcknowledgedBatchCannotBeCommittedAgain() {
        var window = DeliveryWindow()
        let first = window.open(tags: [1])
        #expect(window.commit(first) == 1)
        #expect(window.commit(first) == nil)
        let second = window.open(tags: [2])
        #expect(window.commit(second) == 2)
    }

    static let natural = BatchPolicy(batchSize: 4000, maxDelay: .zero, prefetch: 12_000)
    static let delayed = BatchPolicy(batchSize: 4000, maxDelay: .milliseconds(200), prefetch: 12_000)

    @Test func aLoneCheckInMakesABatchAtOnceUnlessADelayIsAsked() {
        #expect(Self.natural.isReady(received: 1, unacknowledged: 0, waited: .zero))
        #expect(Self.natural.isReady(received: 1, unacknowledged: 8000, waited: .zero))
        #expect(!Self.natural.isReady(received: 0, unacknowledged: 0, waited: .seconds(9)))
        #expect(!Self.delayed.isReady(received: 1, unacknowledged: 0, waited: .milliseconds(199)))
        #expect(Self.delayed.isReady(received: 1, unacknowledged: 0, waited: .milliseconds(200)))
    }

    @Test func aDelayedBatchIsCutWhenFullOrWhenNoMoreCanArrive() {
        #expect(Self.delayed.isReady(received: 4000, unacknowledged: 0, waited: .zero))
        #expect(!Self.delayed.isReady(received: 3999, unacknowledged: 8000, waited: .zero))
        // The broker's window is full: nothing more arrives until a batch is acknowledged.
        #expect(Self.delayed.isReady(received: 10, unacknowledged: 11_990, waited: .zero))
    }

    @Test func redeliveriesMakeSmallerBatchesTheMoreTheyCameBack() {
        #expect(Self.natural.size(previousDeliveries: Array(repeating: 0, count: 5000)) == 4000)
        #expect(Self.natural.size(previousDeliveries: Array(repeating: 0, count: 7)) == 7)
        #expect(Self.natural.size(previousDeliveries: [0, 0, 1] + Array(repeating: 0, count: 5000)) == 2000)
        #expect(Self.natural.size(previousDeliveries: [3] + Array(repeating: 0, count: 5000)) == 500)
        #expect(Self.natural.size(previousDeliveries: [40, 0, 0]) == 1)
        // Only the deliveries the batch could take count: one that came back, past them, waits for its own batch.
        #expect(Self.natural.size(previousDeliveries: Array(repeating: 0, count: 4000) + [5]) == 4000)
    }
}
