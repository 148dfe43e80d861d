import AMQPClient
import Logging
import Pipeline

/// The consumer's connection to the broker, ready to receive: the topology declared, the prefetch window set, and
/// the rollups queue consumed with manual acknowledgements.
struct BrokerSession {
    let connection: AMQPConnection
    let consumerTag: String

    /// Opens a session on the first node that answers, from the one after `previous` (the node of a session that was
    /// lost), so that a lost node is not the first tried again.
    static func open(
        _ settings: ConsumerSettings, after previous: AMQPConfiguration.Node?, logger: Logger
    ) async throws -> BrokerSession {
        let connection = try await AMQPConnection.connect(settings.amqp, after: previous, logger: logger)
        do {
            try await connection.declare(settings.topology)
            try await connection.setPrefetch(settings.prefetch)
            let consumerTag = try await connection.consume(
                settings.topology.queue, bodyLimit: settings.rules.maxBodyBytes)
            return BrokerSession(connection: connection, consumerTag: consumerTag)
        } catch {
            await connection.close()
            throw error
        }
    }
}
