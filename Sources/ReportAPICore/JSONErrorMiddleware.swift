import Basics
import Hummingbird
import Logging
import PostgresClient
import Synchronization

/// Turns every error into a JSON answer that shows no internals: 400 for a bad query, 404 for an unknown path,
/// 405 for a method the path does not allow, 503 while the database is unreachable or the costly reports' turns are
/// all taken, 500 (logged, with no detail in the answer) for anything else. (Answering HEAD, the server sends the headers alone.)
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    /// Named in the answer when a query runs past it.
    let statementTimeout: Duration
    /// The routes' paths: another method than GET or HEAD on one of them answers 405, not 404.
    let knownPaths: KnownPaths

    /// 405, naming the methods the API allows.
    private func readOnly() -> Response {
        var answer = json(ReportJSON.error("this API is read-only: use GET"), status: .methodNotAllowed)
        answer.headers[.allow] = allowedMethods
        return answer
    }

    /// A 503 that tells clients when to try again.
    private func unavailable(_ message: String) -> Response {
        var answer = json(ReportJSON.error(message), status: .serviceUnavailable)
        answer.headers[.retryAfter] = "1"
        return answer
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as QueryError {
            return json(ReportJSON.error(error.message), status: .badRequest)
        } catch let error as CostlyReportsBusy {
            logger.notice("Every turn of the costly reports stayed taken", metadata: [LogKey.error: "\(error.message)"])
            return unavailable(error.message)
        } catch let error as PostgresError where error.code == .cancelled {
            logger.debug("A request's query was cancelled", metadata: [LogKey.error: "\(error)"])
            return unavailable("the request was cancelled")
        } catch is CancellationError {
            // The client went away (or the server stops): nobody reads this answer.
            logger.debug("A request was cancelled")
            return unavailable("the request was cancelled")
        } catch let error as HTTPError where error.status == .notFound {
            guard request.method == .get || request.method == .head || !knownPaths.contains(request.uri.path) else {
                return readOnly()
            }
            return json(ReportJSON.error("no such path: \(request.uri.path)"), status: .notFound)
        } catch let error as HTTPError where error.status == .methodNotAllowed {
            return readOnly()
        } catch let error as PostgresError where error.isStatementTimeout {
            logger.warning(
                "A report ran past the statement timeout", metadata: [LogKey.error: "\(error.debugDescription)"])
            return unavailable(
                "the report took longer than the statement timeout (DB_STATEMENT_TIMEOUT_MS, "
                    + "\(statementTimeout.milliseconds) ms): narrow the range or try again later")
        } catch let error as PostgresError where error.code == .poolExhausted {
            logger.warning("No database connection was free", metadata: [LogKey.error: "\(error.debugDescription)"])
            return unavailable(error.message)
        } catch let error as PostgresError where error.isRetriable {
            logger.warning("The database is unavailable", metadata: [LogKey.error: "\(error.debugDescription)"])
            return unavailable("the database is unavailable; try again shortly")
        } catch {
            logger.error("A request failed", metadata: [LogKey.error: "\(String(reflecting: error))"])
            return json(ReportJSON.error("internal error"), status: .internalServerError)
        }
    }
}

/// The paths the router serves, to tell a method the API does not allow on one of them (405) from a path it does not
/// serve (404): the router answers both as not found. Recorded once the routes are added.
final class KnownPaths: Sendable {
    private let routes = Mutex<[[String]]>([])

    func record(_ paths: [String]) {
        routes.withLock { $0 = paths.map(Self.components) }
    }

    /// Whether `path` is one of the routes, `{parameter}` components matching any one component, as the router
    /// matches them (empty components skipped).
    func contains(_ path: String) -> Bool {
        let asked = Self.components(path)
        return routes.withLock { routes in
            routes.contains { route in
                route.count == asked.count
                    && zip(route, asked).allSatisfy { $0 == $1 || ($0.hasPrefix("{") && $0.hasSuffix("}")) }
            }
        }
    }

    private static func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init)
    }
}
