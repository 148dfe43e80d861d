import Hummingbird
import Prometheus
import Synchronization

/// Counts the API's answers by route and status, and times them by route, until the answer's head is ready (a
/// streamed body's writing is not timed). Hummingbird's `MetricsMiddleware` cost a good part of the cached reports'
/// throughput (docs/benchmarks.md): it wraps every body to time its writing, which gives up the single-buffer
/// write, and keeps an active-requests gauge. Here each request looks up its route's handles once and records two numbers.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: RequestMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.record(route: context.endpointPath, status: response.status, since: started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            metrics.record(route: context.endpointPath, status: status, since: started)
            throw error
        }
    }
}

/// The handles of `coworking_api_requests_total` and `coworking_api_request_duration_seconds`, made once per route
/// and status in the registry that `/metrics` exports.
final class RequestMetrics: Sendable {
    private struct Route {
        let duration: DurationHistogram
        var answers: [Int: Counter] = [:]
    }

    private let registry: PrometheusCollectorRegistry
    private let routes = Mutex<[String: Route]>([:])
    private static let buckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5),
    ]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    /// Records an answer of `route`. Hummingbird names every path no route matched `NotFound`, so unknown paths
    /// make one series rather than one each.
    func record(route: String?, status: HTTPResponse.Status, since started: ContinuousClock.Instant) {
        let route = route ?? "NotFound"
        let (duration, answers) = routes.withLock { routes in
            if let known = routes[route], let answers = known.answers[status.code] { return (known.duration, answers) }
            var handles = routes[route] ?? Route(duration: makeDuration(route))
            let answers = makeCounter(route, status.code)
            handles.answers[status.code] = answers
            routes[route] = handles
            return (handles.duration, answers)
        }
        duration.record(.now - started)
        answers.increment()
    }

    private func makeDuration(_ route: String) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "coworking", subsystem: "api", metricName: "request_duration", unitName: "seconds",
                helpText: "Time from a request to its answer's head, by route"),
            labels: [("route", route)], buckets: Self.buckets)
    }

    private func makeCounter(_ route: String, _ status: Int) -> Counter {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "coworking", subsystem: "api", metricName: "requests", unitName: "total",
                helpText: "Answers by route and status"),
            labels: [("route", route), ("status", String(status))])
    }
}
