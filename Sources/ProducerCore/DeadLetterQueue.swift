import Logging
import Shared

/// The operator's tools for `coworking.dead`: a summary by reason, and publishing chosen dead letters again (after a
/// fix) or removing them. A dead letter is only ever removed after what was asked of it is done: requeued ones once
/// the broker confirmed them on the events exchange (a duplicate is harmless, the consumer counts an `event_id`
/// once). The others are left unacknowledged and return to the queue, in their order, when the connection closes.
public struct DeadLetterQueue: Sendable {
    public let configuration: AMQPConfiguration
    public let topology: Topology
    public let logger: Logger

    public init(configuration: AMQPConfiguration, topology: Topology, logger: Logger) {
        self.configuration = configuration
        self.topology = topology
        self.logger = logger
    }

    /// The dead letters of one reason.
    public struct Summary: Sendable, Equatable {
        public var reason: String
        public var count: Int
        /// When the oldest and the newest were first published, where their publisher stamped them.
        public var oldest: Timestamp?
        public var newest: Timestamp?
        /// The body of one of them, its first 200 bytes.
        public var example: String

        public init(reason: String, count: Int, oldest: Timestamp?, newest: Timestamp?, example: String) {
            self.reason = reason
            self.count = count
            self.oldest = oldest
            self.newest = newest
            self.example = example
        }
    }

    /// Why a dead letter is there: the consumer's `x-rejection-reason`, or the broker's delivery limit.
    public static func reason(of letter: AMQPDelivery) -> String {
        if case .string(let reason)? = letter.header("x-rejection-reason") { return reason }
        if letter.header("x-death") != nil { return "delivered too often (the queue's delivery limit, x-death)" }
        return "no reason recorded"
    }

    /// The dead letters by reason, most frequent first; every one stays in the queue.
    public func summarize() async throws -> [Summary] {
        var summaries: [String: Summary] = [:]
        try await scan { letters in
            for letter in letters {
                let reason = Self.reason(of: letter)
                let stamped = letter.timestamp.map { Timestamp(microsecondsSinceEpoch: Int64($0) * 1_000_000) }
                var summary =
                    summaries[reason]
                    ?? Summary(
                        reason: reason, count: 0, oldest: nil, newest: nil,
                        example: String(decoding: letter.body.prefix(200), as: UTF8.self))
                summary.count += 1
                if let stamped {
                    summary.oldest = min(summary.oldest ?? stamped, stamped)
                    summary.newest = max(summary.newest ?? stamped, stamped)
                }
                summaries[reason] = summary
            }
            return []
        }
        return summaries.values.sorted { ($0.count, $1.reason) > ($1.count, $0.reason) }
    }

    /// Publishes the dead letters whose reason contains `reason` (all when nil), `limit` at most, to the events
    /// exchange with their routing key, properties and headers (less the rejection's), and removes each once
    /// confirmed; returns how many were matched and how many requeued.
    public func requeue(reason: String?, limit: Int?) async throws -> (matched: Int, requeued: Int) {
        let publisher = EventPublisher(configuration: configuration, exchange: topology.exchange, logger: logger)
        var (matched, requeued) = (0, 0)
        try await scan { letters in
            let chosen = choose(letters, reason: reason, limit: limit.map { $0 - matched })
            matched += chosen.count
            guard !chosen.isEmpty else { return [] }
            let counts = await publisher.publish(chosen.map { Self.republished($0, to: topology.exchange) })
            // Removed only when every one was confirmed: the rest stay, and another run publishes them again.
            guard counts.confirmed == chosen.count else { return [] }
            requeued += chosen.count
            return chosen
        }
        await publisher.close()
        return (matched, requeued)
    }

    /// Removes the dead letters whose reason contains `reason` (all when nil), `limit` at most; returns how many.
    public func purge(reason: String?, limit: Int?) async throws -> Int {
        var removed = 0
        try await scan { letters in
            let chosen = choose(letters, reason: reason, limit: limit.map { $0 - removed })
            removed += chosen.count
            return chosen
        }
        return removed
    }

    private func choose(_ letters: [AMQPDelivery], reason: String?, limit: Int?) -> [AMQPDelivery] {
        let matching = letters.filter { reason == nil || Self.reason(of: $0).contains(reason!) }
        return Array(matching.prefix(max(limit ?? .max, 0)))
    }

    /// A dead letter as it was first published: the rejection's headers removed. Headers nested too deep to copy
    /// are dropped, the rest of the properties kept.
    static func republished(_ letter: AMQPDelivery, to exchange: String) -> AMQPOutgoingMessage {
        guard var properties = try? letter.properties() else {
            return AMQPOutgoingMessage.forwarding(
                letter, exchange: exchange, routingKey: letter.routingKey, replacingHeadersWith: [:], body: letter.body)
        }
        properties.headers?["x-rejection-reason"] = nil
        properties.headers?["x-death"] = nil
        properties.headers?["x-first-death-exchange"] = nil
        properties.headers?["x-first-death-queue"] = nil
        properties.headers?["x-first-death-reason"] = nil
        properties.headers?["x-delivery-count"] = nil
        if properties.headers?.entries.isEmpty == true { properties.headers = nil }
        return AMQPOutgoingMessage(
            exchange: exchange, routingKey: letter.routingKey, properties: properties, body: letter.body)
    }

    /// Reads every dead letter there is now, in batches handed to `body`, which returns those to remove; the rest
    /// return to the queue when the connection closes.
    private func scan(_ body: ([AMQPDelivery]) async throws -> [AMQPDelivery]) async throws {
        let amqp = try await AMQPConnection.connect(configuration, logger: logger)
        let total = try await amqp.queueStatus(topology.deadLetterQueue).messageCount
        // Every message is held until the connection closes, so the window must hold them all.
        try await amqp.setPrefetch(0)
        try await amqp.consume(topology.deadLetterQueue)
        var seen = 0
        while seen < total {
            let letters = try await amqp.nextDeliveries(
                limit: min(500, total - seen), maxDelay: .milliseconds(200), idleTimeout: .seconds(5))
            guard !letters.isEmpty else { break }
            seen += letters.count
            for letter in try await body(letters) { try await amqp.ack(letter.deliveryTag, multiple: false) }
        }
        await amqp.close()
    }
}
