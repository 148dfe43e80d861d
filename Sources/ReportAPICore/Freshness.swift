import Basics
import Hummingbird
import PostgresClient

/// How current a report is: the rollups' version (the count of folds that changed them) and the commit time of the
/// newest fold. Every report answer carries them as `ETag` and `Last-Modified`, with `Cache-Control: no-cache`, so
/// that clients and proxies revalidate, and a request whose `If-None-Match` or `If-Modified-Since` still holds is
/// answered 304 without a body.
public struct Freshness: Sendable, Equatable {
    /// Grows with every fold that counts anything, in whatever order replicas commit.
    public var version: Int64
    /// When the newest fold committed; nil before the first.
    public var lastFolded: Timestamp?

    public init(version: Int64, lastFolded: Timestamp?) {
        self.version = version
        self.lastFolded = lastFolded
    }

    /// The rollups' version and the newest fold, as `connection`'s server holds them (a standby: as far as it has
    /// replayed).
    static func read(on connection: PostgresConnection) async throws -> Freshness {
        let row = try await connection.query(
            "SELECT coalesce(sum(folds), 0)::bigint, max(last_folded_at) FROM fold_totals")[0]
        return Freshness(version: Int64(try row.int(0)), lastFolded: try row.optionalTimestamp(1))
    }

    /// A strong validator: the same version of the rollups gives the same bytes for the same path and query. JSON's
    /// is the version, `"12"`; CSV's, another representation, `"12-csv"`.
    public func entityTag(_ format: ReportFormat = .json) -> String {
        format == .json ? "\"\(version)\"" : "\"\(version)-\(format.rawValue)\""
    }

    /// `ETag`, `Last-Modified` and `Cache-Control` of an answer. The representation depends on `Accept` (CSV or
    /// JSON), so shared caches are told so.
    func headers(_ format: ReportFormat) -> HTTPFields {
        var headers: HTTPFields = [.eTag: entityTag(format), .cacheControl: "no-cache", .vary: "Accept"]
        if let lastFolded { headers[.lastModified] = lastFolded.httpDate }
        return headers
    }

    /// Whether `request` already holds this version: its `If-None-Match` names the tag (or `*`); or, without that
    /// header, its `If-Modified-Since` is no earlier than the last fold (HTTP dates count whole seconds).
    func isHeld(by request: Request, format: ReportFormat = .json) -> Bool {
        if let tags = request.headers[.ifNoneMatch] {
            let entityTag = entityTag(format)
            return tags.split(separator: ",").contains { tag in
                let tag = tag.trimmingCharacters(in: .whitespaces)
                return tag == "*" || tag == entityTag || tag == "W/" + entityTag
            }
        }
        guard let since = request.headers[.ifModifiedSince].flatMap(Timestamp.init(httpDate:)), let lastFolded else {
            return false
        }
        return lastFolded.microsecondsSinceEpoch / 1_000_000 <= since.microsecondsSinceEpoch / 1_000_000
    }

    /// 304 with the validators when `request` holds this version, else `answer` with them added.
    func response(to request: Request, format: ReportFormat = .json, _ answer: @autoclosure () -> Response)
        -> Response
    {
        guard !isHeld(by: request, format: format) else {
            return Response(status: .notModified, headers: headers(format))
        }
        var response = answer()
        response.headers.append(contentsOf: headers(format))
        return response
    }
}
