import DequeModule

/// The consumer's rules of acknowledgement, as state with no I/O: the batches it holds unacknowledged, in the order
/// their deliveries arrived, and the multiple-ack each commit allows.
///
/// A batch is acknowledged only once it has committed and every batch before it has too, with one multiple-ack of
/// its last delivery: folds on different connections may commit in any order, but a multiple-ack covers every
/// earlier delivery of the channel, so it must never reach past a batch whose fold has not committed. A delivery the
/// consumer settled another way (requeued, when its dead letter was not confirmed) is one the broker no longer holds
/// for it, and no multiple-ack may name it.
struct DeliveryWindow {
    /// One batch of the window.
    struct BatchID: Hashable, Sendable {
        fileprivate let value: Int
    }

    private struct Batch {
        let id: BatchID
        /// Its deliveries' tags, ascending.
        let tags: [UInt64]
        /// Tags settled otherwise.
        var settled: Set<UInt64> = []
        var committed = false
    }

    private var batches = Deque<Batch>()
    private var nextID = 0

    /// Deliveries held in the window's batches and not settled otherwise.
    private(set) var unacknowledged = 0

    /// Whether no batch waits for its commit or for an earlier one's.
    var isEmpty: Bool { batches.isEmpty }

    /// Opens a batch of the deliveries `tags`, which arrived after every batch already open.
    mutating func open(tags: [UInt64]) -> BatchID {
        assert(zip(tags, tags.dropFirst()).allSatisfy(<) && (batches.last?.tags.last ?? 0) < (tags.first ?? .max))
        let id = BatchID(value: nextID)
        nextID += 1
        batches.append(Batch(id: id, tags: tags))
        unacknowledged += tags.count
        return id
    }

    /// Records that delivery `tag` of batch `id` was settled otherwise (rejected and requeued).
    mutating func settle(_ tag: UInt64, in id: BatchID) {
        guard let index = batches.firstIndex(where: { $0.id == id }), batches[index].tags.contains(tag),
            batches[index].settled.insert(tag).inserted
        else { return }
        unacknowledged -= 1
    }

    /// Records the commit of batch `id`, and returns the tag of the multiple-ack that acknowledges every batch from
    /// the oldest to the last committed one before the first that has not; nil when the oldest has not committed,
    /// or when every delivery of those batches was settled otherwise (they leave the window all the same).
    mutating func commit(_ id: BatchID) -> UInt64? {
        guard let index = batches.firstIndex(where: { $0.id == id }) else { return nil }
        batches[index].committed = true
        var acknowledged: UInt64?
        while let oldest = batches.first, oldest.committed {
            batches.removeFirst()
            unacknowledged -= oldest.tags.count - oldest.settled.count
            acknowledged = oldest.tags.last { !oldest.settled.contains($0) } ?? acknowledged
        }
        return acknowledged
    }
}
