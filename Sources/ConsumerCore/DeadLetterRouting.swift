import AMQPClient
import Basics
import Logging
import Pipeline

/// What the consumer does with a message it cannot count: the message goes to the dead-letter exchange with its
/// reason (docs/events.md), and once the broker confirms it is there, it needs only its batch's acknowledgement; one
/// the broker did not confirm is requeued instead, to be tried again.
struct DeadLetterRouting: Sendable {
    /// A batch's deliveries sorted: the events to fold and their deliveries, in order, and the tags of the invalid
    /// messages requeued because their dead letters were not confirmed.
    struct Sorted {
        var events: [Event]
        var deliveries: [AMQPDelivery]
        var requeued: Set<UInt64>
    }

    /// A message that cannot be counted, and why.
    struct Rejected {
        var delivery: AMQPDelivery
        var reason: String
        /// The rule it broke, for the dead letters' metric; nil when the database refused it.
        var kind: EventRejection.Kind?
    }

    private let decoder: EventDecoder
    private let exchange: String
    private let publisher: DeadLetterPublisher
    private let metrics: ConsumerMetrics
    private let logger: Logger

    init(settings: ConsumerSettings, metrics: ConsumerMetrics, logger: Logger) {
        self.decoder = EventDecoder(rules: settings.rules)
        self.exchange = settings.topology.deadLetterExchange
        self.publisher = DeadLetterPublisher(configuration: settings.amqp, logger: logger)
        self.metrics = metrics
        self.logger = logger
    }

    /// Decodes `deliveries`, dead-lettering the messages that are not valid events.
    func sort(_ deliveries: some Collection<AMQPDelivery>, consumingOn amqp: AMQPConnection) async throws -> Sorted {
        let now = Timestamp.now
        var sorted = Sorted(events: [], deliveries: [], requeued: [])
        sorted.events.reserveCapacity(deliveries.count)
        var rejected: [Rejected] = []
        for delivery in deliveries {
            do {
                sorted.events.append(try decoder.decode(delivery.body, bodySize: delivery.bodySize, now: now))
                sorted.deliveries.append(delivery)
            } catch {
                rejected.append(Rejected(delivery: delivery, reason: error.description, kind: error.kind))
            }
        }
        sorted.requeued = try await deadLetter(rejected, consumingOn: amqp)
        return sorted
    }

    /// Publishes each message with its reason to the dead-letter exchange, on the dead letters' own connection,
    /// and waits for the confirms. A message the broker did not confirm is rejected on `amqp`, the connection it
    /// came on, to be delivered again; returns the tags of those.
    func deadLetter(_ rejected: [Rejected], consumingOn amqp: AMQPConnection) async throws -> Set<UInt64> {
        guard !rejected.isEmpty else { return [] }
        var rejected = rejected
        let messages = rejected.indices.map { index in
            let (message, copyFailure) = deadLetterMessage(rejected[index].delivery, reason: rejected[index].reason)
            if let copyFailure { rejected[index].reason += "; " + copyFailure }
            return message
        }
        let outcomes = try await publisher.publish(messages)
        var requeued: Set<UInt64> = []
        for (message, outcome) in zip(rejected, outcomes) {
            if outcome == .confirmed {
                metrics.recordDeadLetter(message.kind)
                logger.notice(
                    "Dead-lettered a message",
                    metadata: [
                        LogKey.rejectionReason: "\(message.reason)",
                        LogKey.amqpDeliveryTag: "\(message.delivery.deliveryTag)",
                    ])
            } else {
                logger.warning(
                    "A dead letter was not confirmed; its message goes back to the queue to be tried again",
                    metadata: [
                        LogKey.rejectionReason: "\(message.reason)", LogKey.publishOutcome: "\(outcome)",
                        LogKey.amqpDeliveryTag: "\(message.delivery.deliveryTag)",
                    ])
                try await amqp.reject(message.delivery.deliveryTag, requeue: true)
                requeued.insert(message.delivery.deliveryTag)
            }
        }
        return requeued
    }

    /// Closes the dead letters' connection; the next dead letter opens it again.
    func close() async {
        await publisher.close()
    }

    /// The dead letter of `delivery`: its properties and headers as they came, the reason first among the headers,
    /// and the body kept (the first `maxBodyBytes` of one larger). Properties that leave no room in a frame for the
    /// reason lose their headers instead, and the reason says so (the second value).
    private func deadLetterMessage(_ delivery: AMQPDelivery, reason: String) -> (AMQPOutgoingMessage, String?) {
        do {
            let message = try AMQPOutgoingMessage.forwarding(
                delivery, exchange: exchange, routingKey: delivery.routingKey,
                adding: ["x-rejection-reason": .string(reason)], body: delivery.body)
            return (message, nil)
        } catch {
            let copyFailure = "its headers were dropped: \(error.message)"
            let message = AMQPOutgoingMessage.forwarding(
                delivery, exchange: exchange, routingKey: delivery.routingKey,
                replacingHeadersWith: ["x-rejection-reason": .string(reason + "; " + copyFailure)],
                body: delivery.body)
            return (message, copyFailure)
        }
    }
}
