import AMQPClient
import Logging

/// Publishes dead letters with confirms on an AMQP connection of its own, opened when first needed and again
/// after it is lost. A broker that blocks publishers (a memory or disk alarm) blocks this connection only, never the
/// one the consumer receives and acknowledges on. Heartbeats are off on it: it can sit idle for hours, between
/// bad messages, and librabbitmq sends heartbeats only from inside its calls.
actor DeadLetterPublisher {
    private let configuration: AMQPConfiguration
    private let logger: Logger
    private var connection: AMQPConnection?

    init(configuration: AMQPConfiguration, logger: Logger) {
        var configuration = configuration
        configuration.heartbeatSeconds = 0
        self.configuration = configuration
        self.logger = logger
    }

    /// How long the broker may take to confirm: a broker that blocks publishers leaves dead letters unconfirmed, and
    /// the consumer requeues them and goes on with the rest of the stream rather than wait for the alarm to clear.
    static let confirmTimeout = Duration.seconds(10)

    /// Publishes `messages` and returns how the broker settled each. A connection found lost (the broker
    /// restarted since the last dead letter) is opened again once, and the messages not confirmed sent again.
    func publish(_ messages: [AMQPOutgoingMessage]) async throws -> [PublishOutcome] {
        var outcomes = try await openConnection().publishConfirmed(
            messages, window: messages.count, timeout: Self.confirmTimeout)
        guard let connection, await !connection.isOpen, outcomes.contains(.unconfirmed) else { return outcomes }
        let retried = outcomes.indices.filter { outcomes[$0] == .unconfirmed }
        let again = try await openConnection().publishConfirmed(
            retried.map { messages[$0] }, window: retried.count, timeout: Self.confirmTimeout)
        for (index, outcome) in zip(retried, again) { outcomes[index] = outcome }
        return outcomes
    }

    func close() async {
        await connection?.close()
        connection = nil
    }

    private func openConnection() async throws -> AMQPConnection {
        if let connection, await connection.isOpen { return connection }
        await connection?.close()
        let opened = try await AMQPConnection.connect(configuration, after: connection?.node, logger: logger)
        try await opened.enableConfirms()
        connection = opened
        return opened
    }
}
