/// When the consumer cuts a batch from the deliveries it has received, and how large: as a pure rule, apart from the
/// loop that reads and folds.
struct BatchPolicy: Sendable {
    /// `BATCH_SIZE`.
    var batchSize: Int
    /// `BATCH_MAX_DELAY_MS`; zero for natural batching.
    var maxDelay: Duration
    /// `PREFETCH`: the most deliveries the broker sends unacknowledged.
    var prefetch: Int

    /// Whether the deliveries received and not yet batched (`received`, the first of them `waited` ago) make a batch
    /// now, for a fold connection that is free, while `unacknowledged` others are in batches not yet acknowledged.
    /// With no delay, any delivery does: what arrived is folded at once. With a delay, a batch waits for it to pass or
    /// to be full, unless the broker's window is full, so that no more can arrive until a batch is acknowledged.
    func isReady(received: Int, unacknowledged: Int, waited: Duration) -> Bool {
        guard received > 0 else { return false }
        return received >= batchSize || waited >= maxDelay || unacknowledged + received >= prefetch
    }

    /// How many of the received deliveries, whose earlier deliveries are `previousDeliveries` oldest first, the next
    /// batch takes: up to `batchSize`, unless some came back before (after a crash or a lost connection): then the
    /// more times they came back the fewer, down to one, so that a message that crashes the consumer reaches the
    /// delivery limit alone, without valid events beside it.
    func size(previousDeliveries: some Collection<Int>) -> Int {
        let mostDeliveries = previousDeliveries.prefix(batchSize).max() ?? 0
        return min(max(1, batchSize >> min(mostDeliveries, 20)), previousDeliveries.count)
    }
}
