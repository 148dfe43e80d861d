import AMQPClient
import Basics
import Logging
import ServiceLifecycle

/// Reads how many messages the rollups queue holds ready every few seconds, on a connection of its own, for
/// `coworking_consumer_queue_ready_messages` (what KEDA scales on, with the unacknowledged ones). A passive declare on
/// the connection the consumer receives on would interleave with its stream of deliveries.
final class QueueDepthGauge: Service {
    private let configuration: AMQPConfiguration
    private let queue: String
    private let metrics: ConsumerMetrics
    private let logger: Logger
    private static let interval = Duration.seconds(5)

    init(configuration: AMQPConfiguration, queue: String, metrics: ConsumerMetrics, logger: Logger) {
        var configuration = configuration
        // Heartbeats are sent only from inside librabbitmq's calls, and this connection makes one every few seconds.
        configuration.heartbeatSeconds = 0
        self.configuration = configuration
        self.queue = queue
        self.metrics = metrics
        self.logger = logger
    }

    /// Reads until a graceful shutdown, then closes its connection; a connection that fails is opened again at the
    /// next reading.
    func run() async {
        var connection: AMQPConnection?
        while !Task.isShuttingDownGracefully {
            do {
                let open: AMQPConnection
                if let connection {
                    open = connection
                } else {
                    open = try await AMQPConnection.connect(configuration, logger: logger)
                    connection = open
                }
                metrics.queueReady.record(try await open.queueStatus(queue).messageCount)
            } catch {
                logger.debug("Could not read the queue's depth", metadata: [LogKey.error: "\(error)"])
                await connection?.close()
                connection = nil
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.interval) }
            } catch {
                break
            }
        }
        await connection?.close()
    }
}
