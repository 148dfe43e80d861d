import Basics
import ConsumerCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Pipeline
import PostgresClient
import Prometheus
import ReportAPICore
import Testing

/// Routers over test schemas, requests to them, and a tokens file: what the report API's suites share.
public enum ReportAPIFixture {
    /// Zones folded as daily rows; Asia/Kathmandu (+05:45) is left out on purpose, to be answered from the
    /// 15-minute rows.
    public static let zones = ["UTC", "Asia/Kolkata", "America/New_York"]

    /// A router over the rollups of `schema`, as the SELECT-only role.
    /// With `tokensFile`, the reports need one of its tokens.
    public static func router(
        schema: String, defaultZone: String = "UTC", cacheLifetime: Duration = .zero, tokensFile: String? = nil,
        limits: ReportLimits = ReportLimits()
    ) throws -> Router<ReportRequestContext> {
        let pool = PostgresPool(
            configuration: try TestServers.readerDatabase(schema: schema), maxConnections: 4, logger: TestServers.logger
        )
        return ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool),
            zones: ReportZones(folded: Self.zones, defaultZone: defaultZone),
            cacheLifetime: cacheLifetime, tokens: try tokensFile.map(APITokens.fromFile), limits: limits,
            registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
    }

    public static func get(_ router: Router<ReportRequestContext>, _ uri: String) async throws -> (
        HTTPResponse.Status, String
    ) {
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: uri, method: .get) { response in
                (response.status, String(buffer: response.body))
            }
        }
    }

    /// A router whose database cannot be reached: nothing listens on port 1.
    public static func routerWithoutDatabase() throws -> Router<ReportRequestContext> {
        var configuration = try TestServers.readerDatabase(schema: "public")
        configuration.servers = [.init(host: "127.0.0.1", port: 1)]
        let pool = PostgresPool(configuration: configuration, maxConnections: 2, logger: TestServers.logger)
        return ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            registry: PrometheusCollectorRegistry(),
            logger: TestServers.logger)
    }

    public static func router(schema: String, poolSize: Int, statementTimeout: Duration, poolTimeout: Duration) throws
        -> Router<ReportRequestContext>
    {
        var configuration = try TestServers.readerDatabase(schema: schema)
        configuration.statementTimeout = statementTimeout
        let pool = PostgresPool(
            configuration: configuration, maxConnections: poolSize, acquireTimeout: poolTimeout,
            logger: TestServers.logger)
        return ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            registry: PrometheusCollectorRegistry(),
            logger: TestServers.logger)
    }

    /// Runs `body` with a harness whose schema holds the rollups of `events`, folded as the consumer folds them,
    /// dropped afterwards.
    public static func withFolded<T>(_ events: [Event], _ body: (ConsumerHarness) async throws -> T) async throws -> T {
        try await ConsumerHarness.with(zones: zones) { harness in
            try await harness.withDatabase { owner in
                _ = try await owner.withTransaction { try RollupWriter().fold(events, on: $0) }
            }
            return try await body(harness)
        }
    }

    public static func get(_ client: some TestClientProtocol, _ uri: String, _ headers: HTTPFields = [:]) async throws
        -> (status: HTTPResponse.Status, body: String, headers: HTTPFields)
    {
        try await client.execute(uri: uri, method: .get, headers: headers) {
            ($0.status, String(buffer: $0.body), $0.headers)
        }
    }

    /// Runs `body` with a router whose cache keeps answers an hour unless a fold's signal says otherwise, once the
    /// signal is heard (at the generation given to `body`). Reports are read with `reader` (default the SELECT-only
    /// role) and the signal heard with `signalDatabase` (default the owner's role, so that a test may end the signal's
    /// connection: a role may end its own backends).
    public static func withSignalledRouter(
        schema: String, reader: PostgresConfiguration? = nil, signalDatabase: PostgresConfiguration? = nil,
        logger: Logger = TestServers.logger,
        _ body: (Router<ReportRequestContext>, FoldSignal, UInt64) async throws -> Void
    ) async throws {
        let signal = FoldSignal(
            configuration: try signalDatabase ?? TestServers.database(schema: schema),
            registry: PrometheusCollectorRegistry(), logger: logger)
        let pool = PostgresPool(
            configuration: try reader ?? TestServers.readerDatabase(schema: schema), maxConnections: 2,
            logger: TestServers.logger)
        let router = ReportAPIApp.buildRouter(
            repository: PostgresReportRepository(pool: pool), zones: TestServers.utcZones,
            cacheLifetime: .seconds(3_600),
            foldSignal: signal,
            registry: PrometheusCollectorRegistry(), logger: TestServers.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await signal.run() }
            let heard = await signal.generation(after: nil)
            try await body(router, signal, heard)
            group.cancelAll()
        }
    }

    /// `printf %s s3cret-token | sha256sum`
    public static let digest = "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e"

    public static func tokensFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID())").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
