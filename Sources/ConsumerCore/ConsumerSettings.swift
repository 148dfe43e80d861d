import Logging
import Shared

/// The settings of `consumer run`.
public struct ConsumerSettings: Sendable {
    public var database: PostgresConfiguration
    public var amqp: AMQPConfiguration
    public var topology: Topology
    public var rules: EventRules
    /// `BATCH_SIZE`: events folded per transaction at most; default 4000. A fold writes each rollup row once per
    /// batch, so a larger batch writes fewer rows per event: with events spread over a year, 4000 folded about
    /// twice as fast as 1000, and larger batches gained little more while the messages held in flight pushed the
    /// peak RSS toward 64 MiB (`scripts/bench-consumer`).
    public var batchSize: Int
    /// `BATCH_MAX_DELAY_MS`: how long a batch waits to fill after its first event; default 200 ms.
    public var batchMaxDelay: Duration
    /// `PREFETCH`: unacknowledged deliveries the broker may send ahead; default 2 × `BATCH_SIZE`, so one batch
    /// is received while the one before commits.
    public var prefetch: Int
    /// `SHUTDOWN_DEADLINE_S`: how long SIGTERM waits for the batch in hand to commit; default 20 s.
    public var shutdownDeadline: Duration
    /// `METRICS_PORT`: where `/metrics`, `/health_check` and `/readiness_check` are served; default 9090.
    public var metricsPort: Int
    /// `BIND_ADDRESS`: the address that port listens on; default `0.0.0.0`, for Kubernetes probes.
    public var bindAddress: String
    public var logLevel: Logger.Level

    public static let defaultBatchSize = 4000

    public init(
        database: PostgresConfiguration, amqp: AMQPConfiguration = AMQPConfiguration(), topology: Topology = Topology(),
        rules: EventRules = EventRules(), batchSize: Int = ConsumerSettings.defaultBatchSize,
        batchMaxDelay: Duration = .milliseconds(200),
        prefetch: Int? = nil, shutdownDeadline: Duration = .seconds(20), metricsPort: Int = 9090,
        bindAddress: String = "0.0.0.0", logLevel: Logger.Level = .info
    ) {
        self.database = database
        self.amqp = amqp
        self.topology = topology
        self.rules = rules
        self.batchSize = batchSize
        self.batchMaxDelay = batchMaxDelay
        self.prefetch = prefetch ?? min(2 * batchSize, 65_535)
        self.shutdownDeadline = shutdownDeadline
        self.metricsPort = metricsPort
        self.bindAddress = bindAddress
        self.logLevel = logLevel
    }

    public static func fromEnvironment(_ environment: Environment) throws(ConfigurationError) -> ConsumerSettings {
        let batchSize = try environment.integer("BATCH_SIZE", default: Self.defaultBatchSize, in: 1...10_000)
        let prefetch = try environment.integer("PREFETCH", default: min(2 * batchSize, 65_535), in: 1...65_535)
        guard prefetch >= batchSize else {
            throw ConfigurationError(variable: "PREFETCH", problem: "must be at least BATCH_SIZE (\(batchSize))")
        }
        return ConsumerSettings(
            database: try PostgresConfiguration.fromEnvironment(environment, applicationName: "consumer"),
            amqp: try AMQPConfiguration.fromEnvironment(environment),
            topology: try Topology.fromEnvironment(environment),
            rules: try EventRules.fromEnvironment(environment),
            batchSize: batchSize,
            batchMaxDelay: .milliseconds(try environment.integer("BATCH_MAX_DELAY_MS", default: 200, in: 0...60_000)),
            prefetch: prefetch,
            shutdownDeadline: .seconds(try environment.integer("SHUTDOWN_DEADLINE_S", default: 20, in: 1...3_600)),
            metricsPort: try environment.integer("METRICS_PORT", default: 9090, in: 1...65_535),
            bindAddress: environment["BIND_ADDRESS"] ?? "0.0.0.0",
            logLevel: try Logger.Level.fromEnvironment(environment)
        )
    }
}
