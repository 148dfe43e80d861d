import Hummingbird
import Synchronization

/// At most `limit` requests of one client at once; past it, 429 with `Retry-After`. A client is its bearer token when
/// the API has tokens (a token shared by a team is one client), else its address: behind a proxy that does not keep
/// clients' addresses apart, that is the proxy's. The probes and metrics are not limited: the orchestrator and
/// Prometheus call them.
struct ClientLimitMiddleware: RouterMiddleware {
    typealias Context = ReportRequestContext
    let limit: Int
    /// Whether clients are told apart by their `Authorization` header (the API checks tokens).
    let byToken: Bool
    let unlimitedRoutes: Set<String>
    private let inFlight = ClientRequests()

    init(limit: Int, byToken: Bool, unlimitedRoutes: Set<String>) {
        self.limit = limit
        self.byToken = byToken
        self.unlimitedRoutes = unlimitedRoutes
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let route = context.endpointPath, !unlimitedRoutes.contains(route) else {
            return try await next(request, context)
        }
        let client =
            (byToken ? request.headers[.authorization] : nil) ?? context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard inFlight.enter(client, limit: limit) else {
            var answer = json(
                ReportJSON.error(
                    "more than \(limit) requests of this client at once (API_CLIENT_CONCURRENCY); wait for an answer"),
                status: .tooManyRequests)
            answer.headers[.retryAfter] = "1"
            return answer
        }
        defer { inFlight.leave(client) }
        return try await next(request, context)
    }
}

/// Requests in flight per client; a client without any is forgotten.
final class ClientRequests: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func enter(_ client: String, limit: Int) -> Bool {
        counts.withLock { counts in
            guard counts[client, default: 0] < limit else { return false }
            counts[client, default: 0] += 1
            return true
        }
    }

    func leave(_ client: String) {
        counts.withLock { counts in
            let remaining = counts[client, default: 1] - 1
            counts[client] = remaining > 0 ? remaining : nil
        }
    }
}
