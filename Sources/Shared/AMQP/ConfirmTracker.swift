import DequeModule

/// The published messages still waiting for the broker's `basic.ack` or `basic.nack`, by sequence number.
///
/// Sequence numbers grow by one per publish and the broker settles them roughly in order, so they are kept in
/// a deque: a `multiple` settlement pops from the front, a single one is found by binary search.
struct ConfirmTracker {
    private var pending = Deque<(sequence: UInt64, index: Int)>()

    var count: Int { pending.count }

    /// The caller's indices of the unsettled messages, oldest first.
    var indices: some Sequence<Int> { pending.lazy.map(\.index) }

    /// Records that the message the caller knows as `index` was published as `sequence`.
    mutating func add(sequence: UInt64, index: Int) {
        precondition(pending.last.map { $0.sequence < sequence } ?? true, "sequence numbers must grow")
        pending.append((sequence, index))
    }

    /// Settles `tag`, and with `multiple` every earlier sequence number too; returns the settled indices.
    /// Tags that are unknown (already settled) settle nothing.
    mutating func settle(tag: UInt64, multiple: Bool) -> [Int] {
        if multiple {
            var settled: [Int] = []
            while let first = pending.first, first.sequence <= tag {
                settled.append(first.index)
                pending.removeFirst()
            }
            return settled
        }
        var low = 0
        var high = pending.count
        while low < high {
            let middle = (low + high) / 2
            if pending[middle].sequence < tag { low = middle + 1 } else { high = middle }
        }
        guard low < pending.count, pending[low].sequence == tag else { return [] }
        return [pending.remove(at: low).index]
    }
}
