import AMQPClient
import Pipeline

// The pipeline's topology belongs to the consumer, which declares it at every (re)connection; the AMQP layer knows
// only exchanges, queues and bindings.
extension AMQPConnection {
    /// Declares the pipeline's exchanges, queues and bindings: the events exchange (topic) and its quorum queue,
    /// bound with `#` so that an event of an unknown type reaches the consumer to be dead-lettered, and the dead-letter
    /// exchange (fanout) and queue. Declaring them again with the same arguments changes nothing; with other arguments
    /// the broker closes the channel (`channelClosed`).
    public func declare(_ topology: Topology) throws(AMQPError) {
        var quorum: AMQPTable = ["x-queue-type": .string("quorum")]
        quorum["x-quorum-initial-group-size"] = topology.initialGroupSize.map { .int64(Int64($0)) }
        try declareExchange(topology.exchange, type: "topic")
        try declareExchange(topology.deadLetterExchange, type: "fanout")
        try declareQueue(topology.deadLetterQueue, arguments: quorum)
        try bindQueue(topology.deadLetterQueue, to: topology.deadLetterExchange, routingKey: "#")
        var rollups = quorum
        rollups["x-dead-letter-exchange"] = .string(topology.deadLetterExchange)
        rollups["x-dead-letter-strategy"] = .string("at-least-once")
        rollups["x-overflow"] = .string("reject-publish")
        rollups["x-delivery-limit"] = .int64(Int64(topology.deliveryLimit))
        try declareQueue(topology.queue, arguments: rollups)
        try bindQueue(topology.queue, to: topology.exchange, routingKey: "#")
    }
}
