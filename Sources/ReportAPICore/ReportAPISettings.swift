import Basics
import Logging
import Pipeline
import PostgresClient

/// The settings of `report-api`.
public struct ReportAPISettings: Sendable {
    /// The database, as the SELECT-only role.
    public var database: PostgresConfiguration
    /// `REPORT_TIMEZONE` is the zone of a query without `tz`.
    public var zones: ReportZones
    /// `APP_PORT`, default 5153.
    public var port: Int
    /// `BIND_ADDRESS`, default `0.0.0.0`.
    public var bindAddress: String
    /// `DB_POOL_SIZE`: database connections at most, default 4 (two per core: more only queue inside PostgreSQL).
    public var poolSize: Int
    /// `DB_STATEMENT_TIMEOUT_MS`: the longest a report's query may run, default 5000; past it the answer is 503.
    public var statementTimeout: Duration
    /// `DB_POOL_TIMEOUT_MS`: the longest a request waits for a free database connection, default 1000; past it the
    /// answer is 503 with `Retry-After`.
    public var poolTimeout: Duration
    /// `HTTP_IDLE_TIMEOUT_S`: a kept-alive connection without a request is closed after this long, default 60.
    public var idleTimeout: Duration
    /// `HTTP_WRITE_TIMEOUT_S`: a connection whose client reads nothing of an answer for this long is closed,
    /// default 30.
    public var writeTimeout: Duration
    /// `API_TOKENS_FILE`: when set, every `/api/` path needs a bearer token whose SHA-256 digest the file lists.
    public var tokens: APITokens?
    /// `API_METRICS_PORT`: when set, `/metrics` is served on this port alone instead of `APP_PORT`, so that it can
    /// be kept off the network the reports are served on.
    public var metricsPort: Int?
    /// `REPORT_CACHE_MS`: 0 turns the response cache off (default 1000). While the signal of folds is down, how long
    /// a report's answer is reused for the same query; once expired, an answer is still given, for as long again at
    /// most, while one request computes the next, so answers are at most twice that staler than the rollups.
    public var cacheLifetime: Duration
    /// The limits of costly reports, of each client and of the cache: `REPORT_COSTLY_CONCURRENCY` (default half the
    /// pool, at least one, at most the pool less one), `API_CLIENT_CONCURRENCY` (16), `REPORT_CACHE_MB` (32),
    /// `REPORT_MAX_STALE_MS` (2000); a costly report waits `DB_POOL_TIMEOUT_MS` for its turn.
    public var limits: ReportLimits
    /// `DASHBOARD_CHART_JS`: the Chart.js file the dashboard serves, default Debian's (`libjs-chart.js`).
    public var chartLibrary: String
    public var logLevel: Logger.Level

    public init(
        database: PostgresConfiguration, zones: ReportZones = ReportZones(folded: ["UTC"], defaultZone: "UTC"),
        port: Int = 5153, bindAddress: String = "0.0.0.0", poolSize: Int = 4, statementTimeout: Duration = .seconds(5),
        poolTimeout: Duration = .seconds(1), idleTimeout: Duration = .seconds(60),
        writeTimeout: Duration = .seconds(30),
        tokens: APITokens? = nil, metricsPort: Int? = nil, cacheLifetime: Duration = .seconds(1),
        limits: ReportLimits = ReportLimits(), chartLibrary: String = DashboardAssets.debianChartLibrary,
        logLevel: Logger.Level = .info
    ) {
        self.limits = limits
        self.chartLibrary = chartLibrary
        self.tokens = tokens
        self.metricsPort = metricsPort
        self.database = database
        self.database.statementTimeout = statementTimeout
        self.statementTimeout = statementTimeout
        self.poolTimeout = poolTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
        self.zones = zones
        self.port = port
        self.bindAddress = bindAddress
        self.poolSize = poolSize
        self.cacheLifetime = cacheLifetime
        self.logLevel = logLevel
    }

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError)
        -> ReportAPISettings
    {
        let poolSize = try environment.integer("DB_POOL_SIZE", default: 4, in: 1...100)
        let poolTimeout = Duration.milliseconds(
            try environment.integer("DB_POOL_TIMEOUT_MS", default: 1_000, in: 1...60_000))
        let limits = ReportLimits(
            costlyConcurrency: try environment.integer(
                "REPORT_COSTLY_CONCURRENCY", default: max(1, poolSize / 2), in: 1...max(1, poolSize - 1)),
            costlyPatience: poolTimeout,
            clientConcurrency: try environment.integer("API_CLIENT_CONCURRENCY", default: 16, in: 1...10_000),
            cacheBytes: try environment.integer("REPORT_CACHE_MB", default: 32, in: 1...4_096) << 20,
            maxStaleness: .milliseconds(try environment.integer("REPORT_MAX_STALE_MS", default: 2_000, in: 0...600_000))
        )
        return ReportAPISettings(
            database: try PostgresConfiguration.fromEnvironment(
                environment, applicationName: "report-api", sessionAttributes: "prefer-standby"),
            zones: try ReportZones.fromEnvironment(environment),
            port: try environment.integer("APP_PORT", default: 5153, in: 1...65_535),
            bindAddress: environment["BIND_ADDRESS"] ?? "0.0.0.0",
            poolSize: poolSize,
            statementTimeout: .milliseconds(
                try environment.integer("DB_STATEMENT_TIMEOUT_MS", default: 5_000, in: 1...600_000)),
            poolTimeout: poolTimeout,
            idleTimeout: .seconds(try environment.integer("HTTP_IDLE_TIMEOUT_S", default: 60, in: 1...3_600)),
            writeTimeout: .seconds(try environment.integer("HTTP_WRITE_TIMEOUT_S", default: 30, in: 1...3_600)),
            tokens: try environment["API_TOKENS_FILE"].map { path throws(ConfigurationError) in
                try APITokens.fromFile(path)
            },
            metricsPort: try environment["API_METRICS_PORT"].map { _ throws(ConfigurationError) in
                try environment.integer("API_METRICS_PORT", default: 0, in: 1...65_535)
            },
            cacheLifetime: .milliseconds(try environment.integer("REPORT_CACHE_MS", default: 1_000, in: 0...3_600_000)),
            limits: limits,
            chartLibrary: environment["DASHBOARD_CHART_JS"] ?? DashboardAssets.debianChartLibrary,
            logLevel: try Logger.Level.fromEnvironment(environment))
    }
}
