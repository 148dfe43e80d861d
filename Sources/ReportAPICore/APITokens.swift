import Basics
import Crypto
import Foundation
import Hummingbird

/// The bearer tokens that may read the reports, kept as their SHA-256 digests (`API_TOKENS_FILE`), so that the file
/// and the process's memory hold nothing a caller could send.
public struct APITokens: Sendable, Equatable {
    /// The digests, in the file's order.
    public let digests: [[UInt8]]

    public init(digests: [[UInt8]]) {
        self.digests = digests
    }

    /// Reads `API_TOKENS_FILE`: one SHA-256 digest a line, in hex (what `printf %s TOKEN | sha256sum` prints first);
    /// blank lines and lines starting with `#` are skipped.
    public static func fromFile(_ path: String) throws(ConfigurationError) -> APITokens {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError(variable: "API_TOKENS_FILE", problem: "names no readable file \(path.quoted())")
        }
        var digests: [[UInt8]] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let entry = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
            if entry.isEmpty || entry.hasPrefix("#") { continue }
            guard let digest = Self.bytes(hex: entry), digest.count == SHA256.byteCount else {
                throw ConfigurationError(
                    variable: "API_TOKENS_FILE",
                    problem: "line \(index + 1) is not a SHA-256 digest in hex (64 characters 0-9 a-f)")
            }
            digests.append(digest)
        }
        guard !digests.isEmpty else {
            throw ConfigurationError(variable: "API_TOKENS_FILE", problem: "holds no token digest")
        }
        return APITokens(digests: digests)
    }

    /// Whether `authorization` is `Bearer TOKEN` with a TOKEN whose digest is listed. Every digest is compared,
    /// each in time independent of where it differs, so the time taken tells nothing of the tokens.
    func accepts(authorization: String?) -> Bool {
        guard let authorization, authorization.count > 7,
            authorization.prefix(7).lowercased() == "bearer "
        else { return false }
        let digest = Array(SHA256.hash(data: Array(authorization.dropFirst(7).utf8)))
        var matched = false
        for candidate in digests {
            var difference: UInt8 = 0
            for (left, right) in zip(candidate, digest) { difference |= left ^ right }
            matched = matched || difference == 0
        }
        return matched
    }

    private static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.lowercased().utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}

/// Lets a request through to a route that needs the token only with a bearer token of `tokens`; anything else
/// answers 401 with `WWW-Authenticate: Bearer`. Decided on the route the router matched (`context.endpointPath`), never
/// on the path as sent: `//api/...`, `/api//reports/...` and a trailing slash reach the same route and need the same
/// token. Every route needs it unless it is listed in `openRoutes`; a path no route serves answers 404 whatever its
/// token, as it reaches nothing.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: APITokens
    /// The routes anyone may reach, as the router names them (`RouterPath.description`).
    let openRoutes: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let route = context.endpointPath, !openRoutes.contains(route) else {
            return try await next(request, context)
        }
        let authorization = request.headers[.authorization]
        if tokens.accepts(authorization: authorization) { return try await next(request, context) }
        var challenge = #"Bearer realm="coworking reports""#
        if authorization != nil { challenge += #", error="invalid_token""# }
        return Response(
            status: .unauthorized,
            headers: [.contentType: "application/json", .wwwAuthenticate: challenge],
            body: ResponseBody(
                byteBuffer: ByteBuffer(
                    string: ReportJSON.error(
                        authorization == nil
                            ? "this API needs Authorization: Bearer <token>" : "the bearer token is not valid"))))
    }
}
