import Basics
import CRabbitMQ

// Declaring, binding, purging and deleting exchanges and queues.
extension AMQPConnection {
    /// Declares an exchange (durable, not auto-deleted).
    public func declareExchange(_ name: String, type: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_exchange_declare(state, Self.channel, arena.bytes(name), arena.bytes(type), 0, 1, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "declare exchange \(name)")
    }

    /// Declares a durable queue; returns how many messages it holds and how many consumers it has.
    @discardableResult
    public func declareQueue(_ name: String, arguments: AMQPTable = [:]) throws(AMQPError) -> QueueStatus {
        try queueDeclare(name, passive: false, arguments: arguments)
    }

    /// The message and consumer counts of an existing queue (a passive declare).
    public func queueStatus(_ name: String) throws(AMQPError) -> QueueStatus {
        try queueDeclare(name, passive: true, arguments: [:])
    }

    private func queueDeclare(_ name: String, passive: Bool, arguments: AMQPTable) throws(AMQPError) -> QueueStatus {
        let state = try usableState()
        let arena = CArena()
        let ok = amqp_queue_declare(
            state, Self.channel, arena.bytes(name), passive ? 1 : 0, 1, 0, 0, arena.table(arguments))
        try check(amqp_get_rpc_reply(state), "declare queue \(name)")
        guard let ok else {
            throw fail(AMQPError(.unexpectedFrame, "no reply to a queue declaration", isRetriable: true))
        }
        return QueueStatus(messageCount: Int(ok.pointee.message_count), consumerCount: Int(ok.pointee.consumer_count))
    }

    /// Binds `queue` to `exchange` for `routingKey` (`#` for every key of a topic exchange).
    public func bindQueue(_ queue: String, to exchange: String, routingKey: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_queue_bind(
            state, Self.channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "bind queue \(queue)")
    }

    /// Deletes a queue and the messages in it.
    public func deleteQueue(_ name: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_queue_delete(state, Self.channel, arena.bytes(name), 0, 0)
        try check(amqp_get_rpc_reply(state), "delete queue \(name)")
    }

    /// Removes every ready message of a queue; returns how many.
    @discardableResult
    public func purgeQueue(_ name: String) throws(AMQPError) -> Int {
        let state = try usableState()
        let arena = CArena()
        let ok = amqp_queue_purge(state, Self.channel, arena.bytes(name))
        try check(amqp_get_rpc_reply(state), "purge queue \(name)")
        return ok.map { Int($0.pointee.message_count) } ?? 0
    }

    /// Deletes an exchange.
    public func deleteExchange(_ name: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_exchange_delete(state, Self.channel, arena.bytes(name), 0)
        try check(amqp_get_rpc_reply(state), "delete exchange \(name)")
    }
}
