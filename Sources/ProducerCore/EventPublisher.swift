import AMQPClient
import Basics
import Logging
import Pipeline

/// Publishes events to the events exchange with publisher confirms, for the producer's commands and for any
/// Swift service that embeds it.
///
/// Messages go out in a pipelined window. Those the broker nacks, or leaves unconfirmed when the connection
/// drops, are published again (on a new connection if needed): a duplicate is harmless, the consumer counts an
/// `event_id` once. A message the broker returns as unroutable is not retried and counts as not confirmed.
public actor EventPublisher {
    private let configuration: AMQPConfiguration
    private nonisolated let exchange: String
    private let window: Int
    private let logger: Logger
    private let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(3))
    private var connection: AMQPConnection?
    /// Attempts per message before it counts as not confirmed.
    private let maxAttempts: Int

    /// What became of the messages given to `publish(_:)`.
    public struct Counts: Sendable, Equatable {
        public var published = 0
        public var confirmed = 0

        public init(published: Int = 0, confirmed: Int = 0) {
            self.published = published
            self.confirmed = confirmed
        }

        public static func += (lhs: inout Counts, rhs: Counts) {
            lhs.published += rhs.published
            lhs.confirmed += rhs.confirmed
        }
    }

    public init(
        configuration: AMQPConfiguration, exchange: String, window: Int = 1_000, maxAttempts: Int = 5, logger: Logger
    ) {
        self.configuration = configuration
        self.exchange = exchange
        self.window = window
        self.maxAttempts = maxAttempts
        self.logger = logger
    }

    /// The message of an event: its JSON body, routed by its type, with its id as message id.
    public nonisolated func message(for event: Event) -> AMQPOutgoingMessage {
        message(body: event.jsonBody, routingKey: event.kind.rawValue, messageID: event.id.uuidString.lowercased())
    }

    /// A message of raw bytes, as `replay --raw` sends a line.
    public nonisolated func message(body: [UInt8], routingKey: String, messageID: String? = nil)
        -> AMQPOutgoingMessage
    {
        AMQPOutgoingMessage(
            exchange: exchange, routingKey: routingKey, properties: .event(messageID: messageID), body: body)
    }

    /// Publishes `messages` and waits until each is confirmed or has used its attempts.
    public func publish(_ messages: [AMQPOutgoingMessage]) async -> Counts {
        var counts = Counts(published: messages.count)
        var pending = Array(messages.indices)
        var attempt = 0
        while !pending.isEmpty, attempt < maxAttempts {
            attempt += 1
            if attempt > 1 { try? await Task.sleep(for: backoff.delay(attempt: attempt - 1)) }
            let connection: AMQPConnection
            do {
                connection = try await openConnection()
            } catch let error as AMQPError where !error.isRetriable {
                // Refused credentials or an unverified certificate: trying again cannot help.
                logger.error("Could not connect to the broker", metadata: [LogKey.error: "\(error.debugDescription)"])
                break
            } catch {
                logger.warning("Could not reach the broker", metadata: [LogKey.error: "\(String(reflecting: error))"])
                continue
            }
            let outcomes: [PublishOutcome]
            do {
                outcomes = try await connection.publishConfirmed(pending.map { messages[$0] }, window: window)
            } catch {
                continue
            }
            var retry: [Int] = []
            for (index, outcome) in zip(pending, outcomes) {
                switch outcome {
                case .confirmed: counts.confirmed += 1
                case .returned:
                    logger.warning(
                        "The broker returned a message: no queue is bound for it",
                        metadata: [LogKey.amqpRoutingKey: "\(messages[index].routingKey)"])
                case .nacked, .unconfirmed: retry.append(index)
                }
            }
            pending = retry
        }
        return counts
    }

    /// Closes the connection.
    public func close() async {
        await connection?.close()
        connection = nil
    }

    private func openConnection() async throws -> AMQPConnection {
        if let connection, await connection.isOpen { return connection }
        await connection?.close()
        // After a lost connection, the other nodes are tried first.
        let opened = try await AMQPConnection.connect(configuration, after: connection?.node, logger: logger)
        logger.info("Connected to the broker", metadata: [LogKey.amqpNode: "\(opened.node)"])
        try await opened.enableConfirms()
        connection = opened
        return opened
    }
}
