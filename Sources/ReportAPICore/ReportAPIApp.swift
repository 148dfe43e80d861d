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
        let router = buildRouter(
            store: ReportStore(pool: pool), defaultZone: settings.zones.defaultZone,
            cacheLifetime: settings.cacheLifetime, foldSignal: foldSignal, tokens: settings.tokens,
            servesMetrics: settings.metricsPort == nil,
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
        store: ReportStore, defaultZone: String, cacheLifetime: Duration = .zero, foldSignal: FoldSignal? = nil,
        tokens: APITokens? = nil, servesMetrics: Bool = true, registry: PrometheusCollectorRegistry, logger: Logger
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
        // The cached reports are keyed by the request's path and query as sent, and parsed only when computed: a
        // repeated query is answered without parsing it again, and a bad one is never cached. The rollups' version is
        // read before the report, so that an answer never claims a version older than its numbers.
        @Sendable func cachedJSON<Query: Sendable>(
            _ request: Request, parse: @escaping @Sendable () throws -> Query,
            _ report: @escaping @Sendable (Query) async throws -> String
        ) async throws -> Response {
            let cached = try await cache.answer(for: request.uri.string) {
                let query = try parse()
                let freshness = try await store.freshness()
                return (ByteBuffer(string: try await report(query)), freshness)
            }
            return cached.freshness.response(to: request, json(cached.body))
        }
        router.get("api/reports/daily_usage") { request, _ -> Response in
            try await cachedJSON(
                request, parse: { try UsageQuery(parameters: request.queryPairs, defaultZone: defaultZone) }
            ) { ReportJSON.dailyUsage(try await store.dailyUsage($0)) }
        }
        router.get("api/reports/hourly_usage") { request, _ -> Response in
            try await cachedJSON(
                request, parse: { try UsageQuery(parameters: request.queryPairs, defaultZone: defaultZone) }
            ) { ReportJSON.hourlyUsage(try await store.hourlyUsage($0)) }
        }
        router.get("api/reports/user_visits") { request, _ -> Response in
            let query = try UserVisitsQuery(parameters: request.queryPairs)
            let freshness = try await store.freshness()
            if freshness.isHeld(by: request) { return freshness.response(to: request, Response(status: .ok)) }
            if let limit = query.limit {
                let page = try await store.userVisits(after: query.after, limit: limit)
                return freshness.response(to: request, json("{" + ReportJSON.userVisitsMembers(page) + "}"))
            }
            return freshness.response(to: request, streamedUserVisits(store: store, after: query.after, logger: logger))
        }
        router.get("api/reports/summary") { request, _ -> Response in
            try await cachedJSON(request, parse: { try QueryParameters(request.queryPairs, allowed: []) }) { _ in
                ReportJSON.summary(try await store.summary())
            }
        }
        if servesMetrics {
            router.get("metrics") { _, _ in metricsAnswer(registry) }
        }
        router.get("openapi.json") { _, _ in json(OpenAPIDocument.json) }
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

    /// Every user, streamed a page at a time. Once the first bytes are sent the status is 200: a failure after that
    /// cuts the body short (the client sees invalid JSON) and is logged.
    private static func streamedUserVisits(store: ReportStore, after: Int32, logger: Logger) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody { writer in
                var separator = "{"
                do {
                    try await store.streamUserVisits(after: after) { page in
                        try await writer.write(ByteBuffer(string: separator + ReportJSON.userVisitsMembers(page)))
                        separator = ","
                    }
                } catch {
                    logger.error(
                        "Streaming user_visits failed", metadata: [LogKey.error: "\(String(reflecting: error))"])
                    throw error
                }
                try await writer.write(ByteBuffer(string: separator == "{" ? "{}" : "}"))
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
