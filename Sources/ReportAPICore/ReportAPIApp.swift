import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Shared

/// Builds the report API: the legacy paths, the new reports, probes, metrics and the OpenAPI document.
public enum ReportAPIApp {
    /// What `report-api` runs: the API, the listener of the folds' signal that keeps its caches fresh, and the
    /// metrics server when `API_METRICS_PORT` is set; SIGTERM and SIGINT shut them down gracefully.
    public static func buildServiceGroup(
        settings: ReportAPISettings, registry: PrometheusCollectorRegistry, logger: Logger
    ) -> ServiceGroup {
        let foldSignal = FoldSignal(configuration: settings.database, registry: registry, logger: logger)
        var services: [any Service] = [
            buildApplication(settings: settings, foldSignal: foldSignal, registry: registry, logger: logger),
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

    public static func buildApplication(
        settings: ReportAPISettings, foldSignal: FoldSignal? = nil, registry: PrometheusCollectorRegistry,
        logger: Logger
    ) -> some ApplicationProtocol {
        let pool = PostgresPool(
            configuration: settings.database, maxConnections: settings.poolSize, acquireTimeout: settings.poolTimeout,
            logger: logger)
        let dashboard = DashboardAssets.load(chartLibrary: settings.chartLibrary)
        if !dashboard.hasChartLibrary {
            logger.warning(
                "No Chart.js at DASHBOARD_CHART_JS: the dashboard shows its tables without the chart",
                metadata: ["path": "\(settings.chartLibrary)"])
        }
        let router = buildRouter(
            store: ReportStore(pool: pool), zones: settings.zones,
            cacheLifetime: settings.cacheLifetime, foldSignal: foldSignal, tokens: settings.tokens,
            servesMetrics: settings.metricsPort == nil, dashboard: dashboard,
            registry: registry, logger: logger)
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
                    additionalChannelHandlers: [StalledWriteHandler(timeout: writeTimeout, closed: stalledClosed)],
                    idleTimeout: TimeAmount(settings.idleTimeout))),
            configuration: ApplicationConfiguration(
                address: .hostname(settings.bindAddress, port: settings.port), serverName: nil),
            onServerRunning: { channel in
                logger.info(
                    "Serving reports", metadata: [LogKey.httpAddress: "\(channel.localAddress.map { "\($0)" } ?? "")"])
            },
            logger: logger.forFramework)
    }

    /// The routes, separate from the server so that tests drive them with HummingbirdTesting.
    /// `foldSignal`, when given (and running), keeps cached answers exactly as fresh as the rollups; without it they
    /// are kept for `cacheLifetime`.
    public static func buildRouter(
        store: ReportStore, zones: ReportZones, cacheLifetime: Duration = .zero, foldSignal: FoldSignal? = nil,
        tokens: APITokens? = nil, servesMetrics: Bool = true, dashboard: DashboardAssets = .load(),
        registry: PrometheusCollectorRegistry, logger: Logger
    ) -> Router<BasicRequestContext> {
        // Answers are kept as the bytes sent, so that a cached answer is not copied for each request. One read from a
        // standby behind the primary's last signalled fold is not kept.
        let cache = ResponseCache<(body: ByteBuffer, freshness: Freshness)>(
            lifetime: cacheLifetime, generation: { foldSignal?.generation },
            isCurrent: { $0.freshness.version >= foldSignal?.primaryVersion ?? 0 })
        // HEAD is answered by the GET route, without the body, as Flask (the legacy service) does.
        let router = Router(options: .autoGenerateHeadEndpoints)
        // Outermost, so that metrics count the answers the error middleware makes of errors.
        router.add(middleware: RequestMetricsMiddleware(metrics: RequestMetrics(registry: registry)))
        router.add(middleware: JSONErrorMiddleware(logger: logger, statementTimeout: store.statementTimeout))
        if let tokens { router.add(middleware: BearerTokenMiddleware(tokens: tokens)) }

        router.get("health_check") { _, _ in text("ok") }
        router.get("readiness_check") { _, _ -> Response in
            await store.databaseAnswers(within: .seconds(2)) ? text("ok") : text("failed", status: .serviceUnavailable)
        }
        // The cached reports are keyed by the format and the request's path and query as sent, and parsed only when
        // computed: a repeated query is answered without parsing it again, and a bad one is never cached. The
        // rollups' version is read before the report, so that an answer never claims a version older than its numbers.
        @Sendable func cachedReport<Query: Sendable>(
            _ request: Request, parse: @escaping @Sendable ([(String, String)]) throws -> Query,
            _ report: @escaping @Sendable (Query, ReportFormat) async throws -> String
        ) async throws -> Response {
            let (format, parameters) = try ReportFormat.of(request.queryPairs, accept: request.headers[.accept])
            let cached = try await cache.answer(for: format.rawValue + " " + request.uri.string) {
                let query = try parse(parameters)
                let freshness = try await store.freshness()
                return (ByteBuffer(string: try await report(query, format)), freshness)
            }
            return cached.freshness.response(to: request, format: format, answer(cached.body, format))
        }
        @Sendable func usageQuery(_ parameters: [(String, String)]) throws -> UsageQuery {
            try UsageQuery(parameters: parameters, defaultZone: zones.defaultZone)
        }
        router.get("api/reports/daily_usage") { request, _ -> Response in
            try await cachedReport(request, parse: usageQuery) { query, format in
                let days = try await store.dailyUsage(query)
                return format == .csv ? ReportCSV.dailyUsage(days) : ReportJSON.dailyUsage(days)
            }
        }
        router.get("api/reports/hourly_usage") { request, _ -> Response in
            try await cachedReport(request, parse: usageQuery) { query, format in
                let hours = try await store.hourlyUsage(query)
                return format == .csv ? ReportCSV.hourlyUsage(hours) : ReportJSON.hourlyUsage(hours)
            }
        }
        router.get("api/reports/weekday_hours") { request, _ -> Response in
            try await cachedReport(request, parse: usageQuery) { query, format in
                let cells = try await store.weekdayHours(query)
                return format == .csv ? ReportCSV.weekdayHours(cells) : ReportJSON.weekdayHours(cells)
            }
        }
        router.get("api/reports/unique_visitors") { request, _ -> Response in
            try await cachedReport(request, parse: usageQuery) { query, format in
                let (days, total) = try await store.uniqueVisitors(query)
                return format == .csv
                    ? ReportCSV.uniqueVisitors(days, total: total) : ReportJSON.uniqueVisitors(days, total: total)
            }
        }
        router.get("api/reports/top_members") { request, _ -> Response in
            try await cachedReport(request, parse: { try TopMembersQuery(parameters: $0) }) { query, format in
                let members = try await store.topMembers(limit: query.limit)
                return format == .csv ? ReportCSV.topMembers(members) : ReportJSON.topMembers(members)
            }
        }
        router.get("api/reports/user_visits") { request, _ -> Response in
            let (format, parameters) = try ReportFormat.of(request.queryPairs, accept: request.headers[.accept])
            let query = try UserVisitsQuery(parameters: parameters)
            let freshness = try await store.freshness()
            if freshness.isHeld(by: request, format: format) {
                return freshness.response(to: request, format: format, Response(status: .ok))
            }
            if let limit = query.limit {
                let page = try await store.userVisits(after: query.after, limit: limit)
                let body =
                    format == .csv
                    ? ReportCSV.userVisitsHeader + ReportCSV.userVisitsRows(page)
                    : "{" + ReportJSON.userVisitsMembers(page) + "}"
                return freshness.response(to: request, format: format, answer(ByteBuffer(string: body), format))
            }
            return freshness.response(
                to: request, format: format,
                streamedUserVisits(store: store, after: query.after, format: format, logger: logger))
        }
        router.get("api/reports/summary") { request, _ -> Response in
            try await cachedReport(request, parse: { try QueryParameters($0, allowed: []) }) { _, format in
                let summary = try await store.summary()
                return format == .csv ? ReportCSV.summary(summary) : ReportJSON.summary(summary)
            }
        }
        router.get("api/reports/filters") { request, _ -> Response in
            _ = try QueryParameters(request.queryPairs, allowed: [])
            return json(
                ReportJSON.filters(
                    defaultZone: zones.defaultZone, zones: zones.folded, spaces: try await store.spaces()))
        }
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
        // does; the router alone would answer 404, as if the path did not exist.
        for route in router.routes {
            router.on(route.path, method: .options) { _, _ in Response(status: .ok, headers: [.allow: allowedMethods]) }
            for method in [HTTPRequest.Method.post, .put, .patch, .delete] {
                router.on(route.path, method: method) { _, _ -> Response in throw HTTPError(.methodNotAllowed) }
            }
        }
        return router
    }

    /// Every user, streamed a page at a time, as JSON or CSV. Once the first bytes are sent the status is 200: a
    /// failure after that cuts the body short (the client sees invalid JSON, or a CSV without its last rows) and is
    /// logged.
    private static func streamedUserVisits(store: ReportStore, after: Int32, format: ReportFormat, logger: Logger)
        -> Response
    {
        Response(
            status: .ok, headers: [.contentType: contentType(format)],
            body: ResponseBody { writer in
                var first = true
                do {
                    if format == .csv { try await writer.write(ByteBuffer(string: ReportCSV.userVisitsHeader)) }
                    try await store.streamUserVisits(after: after) { page in
                        let text =
                            format == .csv
                            ? ReportCSV.userVisitsRows(page) : (first ? "{" : ",") + ReportJSON.userVisitsMembers(page)
                        try await writer.write(ByteBuffer(string: text))
                        first = false
                    }
                } catch {
                    logger.error(
                        "Streaming user_visits failed", metadata: [LogKey.error: "\(String(reflecting: error))"])
                    throw error
                }
                if format == .json { try await writer.write(ByteBuffer(string: first ? "{}" : "}")) }
                try await writer.finish(nil)
            })
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
