import Basics
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Pipeline
import PostgresClient
import Prometheus
import ServiceLifecycle

/// Builds the report API: the legacy paths, the new reports, probes, metrics and the OpenAPI document.
public enum ReportAPIApp {
    /// What `report-api` runs: the API, the listener of the folds' signal that keeps its caches fresh, and the
    /// metrics server when `API_METRICS_PORT` is set; SIGTERM and SIGINT shut them down gracefully.
    public static func buildServiceGroup(
        settings: ReportAPISettings, registry: PrometheusCollectorRegistry, logger: Logger
    ) -> ServiceGroup {
        let repository = PostgresReportRepository(pool: pool(settings, logger: logger))
        let foldSignal = FoldSignal(configuration: settings.database, registry: registry, logger: logger)
        var services: [any Service] = [
            // First, so that it is the last to stop: the server has answered its last request when the pools close.
            ClosingAtShutdown { await repository.close() },
            buildApplication(
                settings: settings, repository: repository, foldSignal: foldSignal, registry: registry, logger: logger),
            foldSignal,
        ]
        if let metricsPort = settings.metricsPort {
            let router = Router()
            router.get("metrics") { _, _ in metricsAnswer(registry) }
            services.append(
                Application(
                    router: router,
                    configuration: ApplicationConfiguration(
                        address: .hostname(settings.bindAddress, port: metricsPort), serverName: nil),
                    onServerRunning: { channel in
                        logger.info(
                            "Serving metrics",
                            metadata: [LogKey.httpAddress: "\(channel.localAddress.map { "\($0)" } ?? "")"])
                    },
                    logger: logger.forFramework))
        }
        return ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger.forFramework))
    }

    /// The server of the reports, reading through `repository` (by default one on a pool of its own, which nothing
    /// closes: for tests).
    public static func buildApplication(
        settings: ReportAPISettings, repository: PostgresReportRepository? = nil, foldSignal: FoldSignal? = nil,
        registry: PrometheusCollectorRegistry, logger: Logger
    ) -> some ApplicationProtocol {
        let repository = repository ?? PostgresReportRepository(pool: pool(settings, logger: logger))
        let dashboard = DashboardAssets.load(chartLibrary: settings.chartLibrary)
        if !dashboard.hasChartLibrary {
            logger.warning(
                "No Chart.js at DASHBOARD_CHART_JS: the dashboard shows its tables without the chart",
                metadata: ["path": "\(settings.chartLibrary)"])
        }
        let disconnects = ClientDisconnects()
        let router = buildRouter(
            repository: repository, zones: settings.zones,
            cacheLifetime: settings.cacheLifetime, foldSignal: foldSignal, tokens: settings.tokens,
            limits: settings.limits, disconnects: disconnects, servesMetrics: settings.metricsPort == nil,
            dashboard: dashboard, registry: registry, logger: logger)
        let writeTimeout = TimeAmount(settings.writeTimeout)
        let stalledClosed = registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "coworking", subsystem: "api", metricName: "stalled_connections_closed", unitName: "total",
                helpText: "Connections closed because their client read nothing of an answer for HTTP_WRITE_TIMEOUT_S"
            ))
        return Application(
            router: router,
            server: .http1(
                configuration: HTTP1Channel.Configuration(
                    additionalChannelHandlers: [
                        StalledWriteHandler(timeout: writeTimeout, closed: stalledClosed), disconnects.handler(),
                    ],
                    idleTimeout: TimeAmount(settings.idleTimeout))),
            configuration: ApplicationConfiguration(
                address: .hostname(settings.bindAddress, port: settings.port), serverName: nil),
            onServerRunning: { channel in
                logger.info(
                    "Serving reports", metadata: [LogKey.httpAddress: "\(channel.localAddress.map { "\($0)" } ?? "")"])
            },
            logger: logger.forFramework)
    }

    private static func pool(_ settings: ReportAPISettings, logger: Logger) -> PostgresPool {
        PostgresPool(
            configuration: settings.database, maxConnections: settings.poolSize, acquireTimeout: settings.poolTimeout,
            logger: logger)
    }

    /// The routes anyone may reach when `API_TOKENS_FILE` is set, as the router names them: the probes, the OpenAPI
    /// document, the dashboard's page and assets (the page asks for the token itself), and `/metrics` where it is
    /// served on `APP_PORT`. Every other route needs the token.
    static let openRoutes: Set<String> = [
        "/health_check", "/readiness_check", "/openapi.json", "/", "/dashboard/{file}", "/metrics",
    ]

    /// The routes outside the per-client limit: the probes, which the orchestrator calls, and the metrics.
    static let unlimitedRoutes: Set<String> = ["/health_check", "/readiness_check", "/metrics"]

    /// The routes, separate from the server so that tests drive them with HummingbirdTesting.
    /// `foldSignal`, when given (and running), keeps cached answers exactly as fresh as the rollups; without it they
    /// are kept for `cacheLifetime`. `disconnects` cancels the computations of clients that went away; it needs its
    /// handler on the server's connections.
    public static func buildRouter(
        repository store: any ReportRepository, zones: ReportZones, cacheLifetime: Duration = .zero,
        foldSignal: FoldSignal? = nil,
        tokens: APITokens? = nil, limits: ReportLimits = ReportLimits(),
        disconnects: ClientDisconnects = ClientDisconnects(), servesMetrics: Bool = true,
        dashboard: DashboardAssets = .load(), registry: PrometheusCollectorRegistry, logger: Logger
    ) -> Router<ReportRequestContext> {
        let cacheBytes = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "coworking", subsystem: "api", metricName: "cache", unitName: "bytes",
                helpText: "Bytes the response cache holds (answers and their keys), within REPORT_CACHE_MB"))
        // Answers are kept as the bytes sent, so that a cached answer is not copied for each request. One read from a
        // standby behind the primary's last signalled fold is not kept.
        let cache = ResponseCache<CachedReport>(
            lifetime: cacheLifetime, maxStaleness: limits.maxStaleness, maxBytes: limits.cacheBytes,
            generation: { foldSignal?.generation },
            isCurrent: { $0.freshness.version >= foldSignal?.primaryVersion ?? 0 },
            size: { $0.body.readableBytes }, sizeChanged: { cacheBytes.set(Double($0)) })
        // HEAD is answered by the GET route, without the body, as Flask (the legacy service) does.
        let router = Router(context: ReportRequestContext.self, options: .autoGenerateHeadEndpoints)
        // Outermost, so that metrics count the answers the error middleware makes of errors.
        router.add(middleware: RequestMetricsMiddleware(metrics: RequestMetrics(registry: registry)))
        let knownPaths = KnownPaths()
        router.add(
            middleware: JSONErrorMiddleware(
                logger: logger, statementTimeout: store.statementTimeout, knownPaths: knownPaths))
        if let tokens { router.add(middleware: BearerTokenMiddleware(tokens: tokens, openRoutes: openRoutes)) }
        router.add(
            middleware: ClientLimitMiddleware(
                limit: limits.clientConcurrency, byToken: tokens != nil, unlimitedRoutes: unlimitedRoutes))

        router.get("health_check") { _, _ in text("ok") }
        router.get("readiness_check") { _, _ -> Response in
            await store.answers(within: .seconds(2)) ? text("ok") : text("failed", status: .serviceUnavailable)
        }
        ReportController(
            store: store, zones: zones, cache: cache, costly: ConcurrencyLimit(limit: limits.costlyConcurrency),
            costlyPatience: limits.costlyPatience, disconnects: disconnects, logger: logger
        ).addRoutes(to: router)
        if servesMetrics {
            router.get("metrics") { _, _ in metricsAnswer(registry) }
        }
        router.get("openapi.json") { _, _ in json(OpenAPIDocument.json) }
        // The dashboard is public: its reports are read with the visitor's token, which the page asks for.
        router.get("/") { request, _ in dashboard.pageResponse(to: request) }
        router.get("dashboard/:file") { request, context in
            dashboard.fileResponse(context.parameters.get("file") ?? "", to: request)
        }
        // On a path the API serves, OPTIONS names the methods it allows and any other method answers 405, as Flask
        // does (JSONErrorMiddleware); the router alone would answer 404, as if the path did not exist.
        for route in router.routes {
            router.on(route.path, method: .options) { _, _ in Response(status: .ok, headers: [.allow: allowedMethods]) }
        }
        knownPaths.record(router.routes.map(\.path.description))
        return router
    }
}

/// The Prometheus text of `registry`.
private func metricsAnswer(_ registry: PrometheusCollectorRegistry) -> Response {
    Response(
        status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
}

/// The methods each of the API's paths answers.
let allowedMethods = "GET, HEAD, OPTIONS"

/// A report's bytes, with the content type of `format`.
func answer(_ body: ByteBuffer, _ format: ReportFormat) -> Response {
    Response(status: .ok, headers: [.contentType: contentType(format)], body: ResponseBody(byteBuffer: body))
}

func contentType(_ format: ReportFormat) -> String {
    format == .csv ? ReportCSV.contentType : "application/json"
}

func json(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
    json(ByteBuffer(string: body), status: status)
}

func json(_ body: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: body))
}

func text(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "text/plain; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
}

extension Request {
    /// The query's name and value pairs, in order, duplicates kept.
    var queryPairs: [(String, String)] {
        uri.queryParameters.map { (String($0.key), String($0.value)) }
    }
}
