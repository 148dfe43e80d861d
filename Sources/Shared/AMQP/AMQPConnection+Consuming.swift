import Basics
import CRabbitMQ

// Consuming a queue: the prefetch window, deliveries, and their acknowledgements.
extension AMQPConnection {
    /// Limits the unacknowledged deliveries the broker sends this channel to `count`.
    public func setPrefetch(_ count: Int) throws(AMQPError) {
        let state = try usableState()
        amqp_basic_qos(state, Self.channel, 0, UInt16(clamping: count), 0)
        try check(amqp_get_rpc_reply(state), "set the prefetch count")
    }

    /// Starts consuming `queue` with manual acknowledgements; returns the consumer tag. Of a body larger than
    /// `bodyLimit` bytes, only the first `bodyLimit` are kept: the rest is read a frame at a time and discarded, so
    /// that no message, however large, is held whole in memory.
    @discardableResult
    public func consume(_ queue: String, bodyLimit: Int = .max) throws(AMQPError) -> String {
        let state = try usableState()
        self.bodyLimit = bodyLimit
        let arena = CArena()
        let ok = amqp_basic_consume(
            state, Self.channel, arena.bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "consume queue \(queue)")
        return ok.map { String(copying: $0.pointee.consumer_tag) } ?? ""
    }

    /// Stops the broker sending deliveries to `consumerTag`; those already sent still arrive and need an answer.
    public func cancel(_ consumerTag: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_basic_cancel(state, Self.channel, arena.bytes(consumerTag))
        try check(amqp_get_rpc_reply(state), "cancel the consumer")
    }

    /// The next delivery, or nil when none arrives within `timeout`. Confirms read on the way are of no one's
    /// interest here (publishing reads its own) and are dropped.
    public func nextDelivery(timeout: Duration) throws(AMQPError) -> AMQPDelivery? {
        try nextDelivery(until: ContinuousClock.now + timeout)
    }

    private func nextDelivery(until deadline: ContinuousClock.Instant) throws(AMQPError) -> AMQPDelivery? {
        if let delivery = bufferedDeliveries.popFirst() { return delivery }
        while let incoming = try readIncoming(until: deadline) {
            if case .delivery(let delivery) = incoming { return delivery }
        }
        return nil
    }

    /// Up to `limit` deliveries in one hop: those already read, then those whose frames have arrived, after waiting
    /// up to `timeout` for the first when none has. It never waits for a second: a caller that batches deliveries
    /// gets what arrived. Empty when nothing arrived within `timeout`.
    public func nextDeliveries(limit: Int, timeout: Duration) throws(AMQPError) -> [AMQPDelivery] {
        guard limit > 0, let first = try nextDelivery(timeout: timeout) else { return [] }
        var deliveries = [first]
        let now = ContinuousClock.now
        while deliveries.count < limit, let delivery = try nextDelivery(until: now) {
            deliveries.append(delivery)
        }
        return deliveries
    }

    /// Reads frames for `duration` so that heartbeats flow while the owner is busy elsewhere; deliveries that
    /// arrive meanwhile are kept for `nextDelivery(timeout:)`.
    public func keepAlive(for duration: Duration) throws(AMQPError) {
        let deadline = ContinuousClock.now + duration
        while let incoming = try readIncoming(until: deadline) {
            if case .delivery(let delivery) = incoming { bufferedDeliveries.append(delivery) }
        }
    }

    /// Acknowledges `deliveryTag`, and with `multiple` every earlier unacknowledged delivery too.
    public func ack(_ deliveryTag: UInt64, multiple: Bool) throws(AMQPError) {
        let state = try usableState()
        let status = amqp_basic_ack(state, Self.channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "acknowledge")) }
    }

    /// Rejects one delivery: back to the queue with `requeue`, else to the queue's dead-letter exchange.
    public func reject(_ deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let state = try usableState()
        let status = amqp_basic_reject(state, Self.channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "reject")) }
    }
}
