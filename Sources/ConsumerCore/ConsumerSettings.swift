import AMQPClient
import Basics
import Logging
import Pipeline
import PostgresClient

/// The settings of `consumer run`.
public struct ConsumerSettings: Sendable {
    public var database: PostgresConfiguration
    public var amqp: AMQPConfiguration
    public var topology: Topology
    public var rules: EventRules
    /// `REPORT_TIMEZONES`: the zones the consumer expects `consumer migrate` to have recorded. A batch folds the zones
    /// recorded in the database; the setting is checked at start, and a difference is logged.
    public var zones: ReportZones
    /// `BATCH_SIZE`: events folded per transaction at most; default 4000. A fold writes each rollup row once per
    /// batch, so a larger batch writes fewer rows per event, for more memory held; the default is where the gain
    /// stopped (docs/benchmarks.md).
    public var batchSize: Int
    /// `BATCH_MAX_DELAY_MS`: how long a batch may wait to fill after its first event, for fewer and larger
    /// transactions; default 0: a fold connection that is free folds what has arrived at once, and batches fill by
    /// themselves while the folds before them run.
    public var batchMaxDelay: Duration
    /// `FOLD_CONNECTIONS`: database connections, each folding a batch; default 2. Batches are acknowledged in
    /// the order they arrived, whichever commits first. A second fold in flight keeps the database busy while the
    /// first one's last statements and commit run, and lets it use a second core.
    public var foldConnections: Int
    /// `PREFETCH`: unacknowledged deliveries the broker may send ahead; default a batch per fold connection and one
    /// more: while every connection folds, the next batch arrives, whole, for the first connection that is free.
    public var prefetch: Int
    /// `SHUTDOWN_DEADLINE_S`: how long SIGTERM waits for the batch in hand to commit; default 20 s.
    public var shutdownDeadline: Duration
    /// `METRICS_PORT`: where `/metrics`, `/health_check` and `/readiness_check` are served; default 9090.
    public var metricsPort: Int
    /// `BIND_ADDRESS`: the address that port listens on; default `0.0.0.0`, for Kubernetes probes.
    public var bindAddress: String
    /// What is kept: event ids for `DEDUP_HORIZON_DAYS` (the horizon of `rules`), the members' rows and days for
    /// `MEMBER_RETENTION_DAYS`; both unset by default, keeping everything.
    public var retention: Retention.Horizons
    public var logLevel: Logger.Level

    public static let defaultBatchSize = 4000
    public static let defaultFoldConnections = 2

    static func defaultPrefetch(batchSize: Int, foldConnections: Int) -> Int {
        min((foldConnections + 1) * batchSize, 65_535)
    }

    public init(
        database: PostgresConfiguration, amqp: AMQPConfiguration = AMQPConfiguration(), topology: Topology = Topology(),
        rules: EventRules = EventRules(), zones: ReportZones = ReportZones(folded: ["UTC"], defaultZone: "UTC"),
        batchSize: Int = ConsumerSettings.defaultBatchSize,
        batchMaxDelay: Duration = .zero, foldConnections: Int = ConsumerSettings.defaultFoldConnections,
        prefetch: Int? = nil, shutdownDeadline: Duration = .seconds(20), metricsPort: Int = 9090,
        bindAddress: String = "0.0.0.0", retention: Retention.Horizons = Retention.Horizons(),
        logLevel: Logger.Level = .info
    ) {
        self.retention = retention
        self.database = database
        self.amqp = amqp
        self.topology = topology
        self.rules = rules
        self.zones = zones
        self.batchSize = batchSize
        self.batchMaxDelay = batchMaxDelay
        self.foldConnections = foldConnections
        self.prefetch = prefetch ?? Self.defaultPrefetch(batchSize: batchSize, foldConnections: foldConnections)
        self.shutdownDeadline = shutdownDeadline
        self.metricsPort = metricsPort
        self.bindAddress = bindAddress
        self.logLevel = logLevel
    }

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError)
        -> ConsumerSettings
    {
        let batchSize = try environment.integer("BATCH_SIZE", default: Self.defaultBatchSize, in: 1...10_000)
        let foldConnections = try environment.integer(
            "FOLD_CONNECTIONS", default: Self.defaultFoldConnections, in: 1...8)
        let prefetch = try environment.integer(
            "PREFETCH", default: Self.defaultPrefetch(batchSize: batchSize, foldConnections: foldConnections),
            in: 1...65_535)
        guard prefetch >= batchSize else {
            throw ConfigurationError(variable: "PREFETCH", problem: "must be at least BATCH_SIZE (\(batchSize))")
        }
        let rules = try EventRules.fromEnvironment(environment)
        return ConsumerSettings(
            database: try PostgresConfiguration.fromEnvironment(environment, applicationName: "consumer"),
            amqp: try AMQPConfiguration.fromEnvironment(environment),
            topology: try Topology.fromEnvironment(environment),
            rules: rules,
            zones: try ReportZones.fromEnvironment(environment),
            batchSize: batchSize,
            batchMaxDelay: .milliseconds(try environment.integer("BATCH_MAX_DELAY_MS", default: 0, in: 0...60_000)),
            foldConnections: foldConnections,
            prefetch: prefetch,
            shutdownDeadline: .seconds(try environment.integer("SHUTDOWN_DEADLINE_S", default: 20, in: 1...3_600)),
            metricsPort: try environment.integer("METRICS_PORT", default: 9090, in: 1...65_535),
            bindAddress: environment["BIND_ADDRESS"] ?? "0.0.0.0",
            retention: Retention.Horizons(
                eventIDs: rules.dedupHorizonDays,
                members: try environment["MEMBER_RETENTION_DAYS"].map { _ throws(ConfigurationError) in
                    try environment.integer("MEMBER_RETENTION_DAYS", default: 0, in: 1...36_500)
                }),
            logLevel: try Logger.Level.fromEnvironment(environment)
        )
    }
}
