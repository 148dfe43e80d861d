import AMQPClient
import Basics
import Logging
import Pipeline

/// The operator's tools for `coworking.dead`: a summary by reason, and publishing chosen dead letters again (after a
/// fix) or removing them. A dead letter is only ever removed after what was asked of it is done: requeued ones once
/// the broker confirmed them on the events exchange (a duplicate is harmless, the consumer counts an `event_id`
/// once). The others are left unacknowledged and return to the queue, in their order, when the connection closes;
/// each command ends once they are back.
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
        /// The most times one of them was requeued (`x-requeue-count`) and came back: a letter that keeps coming
        /// back needs another fix than a requeue.
        public var mostRequeues: Int

        public init(
            reason: String, count: Int, oldest: Timestamp?, newest: Timestamp?, example: String, mostRequeues: Int = 0
        ) {
            self.reason = reason
            self.count = count
            self.oldest = oldest
            self.newest = newest
            self.example = example
            self.mostRequeues = mostRequeues
        }
    }

    /// The header a requeued letter carries: how many times it was requeued.
    public static let requeueCountHeader = "x-requeue-count"

    /// How many times `letter` was requeued by this tool.
    static func requeues(of letter: AMQPDelivery) -> Int {
        switch letter.header(requeueCountHeader) {
        case .int64(let count)?: Int(count)
        case .int32(let count)?: Int(count)
        default: 0
        }
    }

    /// Which dead letters a command takes: those whose reason contains `reason`, or is exactly it (`exact`), all when
    /// nil; `limit` at most.
    public struct Choice: Sendable {
        public var reason: String?
        public var exact: Bool
        public var limit: Int?

        public init(reason: String? = nil, exact: Bool = false, limit: Int? = nil) {
            self.reason = reason
            self.exact = exact
            self.limit = limit
        }

        func matches(_ letter: AMQPDelivery) -> Bool {
            guard let reason else { return true }
            let actual = DeadLetterQueue.reason(of: letter)
            return exact ? actual == reason : actual.contains(reason)
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
                summary.mostRequeues = max(summary.mostRequeues, Self.requeues(of: letter))
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

    /// Publishes the chosen dead letters to the events exchange with their routing key, properties and headers (less
    /// the rejection's, and with `x-requeue-count` one more), and removes each once confirmed; returns how many were
    /// matched and how many requeued.
    public func requeue(_ choice: Choice) async throws -> (matched: Int, requeued: Int) {
        let publisher = EventPublisher(configuration: configuration, exchange: topology.exchange, logger: logger)
        var (matched, requeued) = (0, 0)
        try await scan { letters in
            let chosen = choose(letters, choice, taken: matched)
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

    /// Removes the chosen dead letters; returns how many.
    public func purge(_ choice: Choice) async throws -> Int {
        var removed = 0
        try await scan { letters in
            let chosen = choose(letters, choice, taken: removed)
            removed += chosen.count
            return chosen
        }
        return removed
    }

    /// The letters of `letters` that `choice` takes, once `taken` were taken from earlier batches.
    private func choose(_ letters: [AMQPDelivery], _ choice: Choice, taken: Int) -> [AMQPDelivery] {
        Array(letters.filter(choice.matches).prefix(max((choice.limit ?? .max) - taken, 0)))
    }

    /// A dead letter as it was first published, the rejection's headers removed, and its count of requeues one
    /// more. Headers nested too deep to copy are dropped, the rest of the properties kept.
    static func republished(_ letter: AMQPDelivery, to exchange: String) -> AMQPOutgoingMessage {
        let requeues: AMQPTable = [requeueCountHeader: .int64(Int64(requeues(of: letter) + 1))]
        guard var properties = try? letter.properties() else {
            return AMQPOutgoingMessage.forwarding(
                letter, exchange: exchange, routingKey: letter.routingKey, replacingHeadersWith: requeues,
                body: letter.body)
        }
        properties.headers?["x-rejection-reason"] = nil
        properties.headers?["x-death"] = nil
        properties.headers?["x-first-death-exchange"] = nil
        properties.headers?["x-first-death-queue"] = nil
        properties.headers?["x-first-death-reason"] = nil
        properties.headers?["x-delivery-count"] = nil
        if properties.headers == nil { properties.headers = [:] }
        properties.headers?[requeueCountHeader] = requeues[requeueCountHeader]
        return AMQPOutgoingMessage(
            exchange: exchange, routingKey: letter.routingKey, properties: properties, body: letter.body)
    }

    /// Reads every dead letter there is now, in batches handed to `body`, which returns those to remove; the rest
    /// return to the queue when the connection closes, and the scan waits for them to be back (the broker returns
    /// them a moment after the close), so that the next command, run at once, finds them all.
    private func scan(_ body: ([AMQPDelivery]) async throws -> [AMQPDelivery]) async throws {
        let kept = try await AMQPConnection.withConnection(configuration, logger: logger) { amqp in
            let total = try await amqp.queueStatus(topology.deadLetterQueue).messageCount
            // Every message is held until the connection closes, so the window must hold them all.
            try await amqp.setPrefetch(0)
            try await amqp.consume(topology.deadLetterQueue)
            var (seen, removed) = (0, 0)
            while seen < total {
                let letters = try await amqp.nextDeliveries(limit: min(500, total - seen), timeout: .seconds(5))
                guard !letters.isEmpty else { break }
                seen += letters.count
                for letter in try await body(letters) {
                    try await amqp.ack(letter.deliveryTag, multiple: false)
                    removed += 1
                }
            }
            return total - removed
        }
        try await AMQPConnection.withConnection(configuration, logger: logger) { amqp in
            let deadline = ContinuousClock.now + Self.returnPatience
            while try await amqp.queueStatus(topology.deadLetterQueue).messageCount < kept, .now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// How long a scan waits for the letters it kept to be back in the queue: longer only when another client
    /// consumes from it at the same time, and then the wait is moot.
    private static let returnPatience = Duration.seconds(10)
}
