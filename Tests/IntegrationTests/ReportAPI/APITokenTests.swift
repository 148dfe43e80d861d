import Basics
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegrationSupport
import ReportAPICore
import Testing

/// `API_TOKENS_FILE` and `API_METRICS_PORT`: the reports need a bearer token, the probes do not, and metrics can
/// leave the reports' port.
@Suite
struct APITokenTests {

    @Test func theTokensFileListsDigestsAndABadLineIsNamed() throws {
        let good = try ReportAPIFixture.tokensFile(
            "# analysts\n\n\(ReportAPIFixture.digest)  analysts-team\n\(ReportAPIFixture.digest.uppercased())\n")
        defer { try? FileManager.default.removeItem(atPath: good) }
        #expect(try APITokens.fromFile(good).digests.count == 2)

        let bad = try ReportAPIFixture.tokensFile("\(ReportAPIFixture.digest)\ns3cret-token\n")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        #expect(throws: ConfigurationError.self) { try APITokens.fromFile(bad) }
        do {
            _ = try APITokens.fromFile(bad)
        } catch {
            #expect(
                error.description
                    == "configuration error: API_TOKENS_FILE line 2 is not a SHA-256 digest in hex (64 characters 0-9 a-f)"
            )
        }
        let empty = try ReportAPIFixture.tokensFile("# nobody yet\n")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: ConfigurationError(variable: "API_TOKENS_FILE", problem: "holds no token digest")) {
            try APITokens.fromFile(empty)
        }
    }

    @Test func theReportsNeedABearerTokenAndTheProbesDoNot() async throws {
        let path = try ReportAPIFixture.tokensFile(ReportAPIFixture.digest + "\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await Schemas.withMigrated { schema in
            let router = try ReportAPIFixture.router(schema: schema, tokensFile: path)
            let answers = try await Application(router: router).test(.router) { client in
                var answers: [String] = []
                for (uri, authorization) in [
                    ("/api/reports/summary", nil), ("/api/reports/summary", "Bearer wrong"),
                    ("/api/reports/user_visits", "Basic czNjcmV0LXRva2Vu"),
                    ("/api/reports/summary", "Bearer s3cret-token"),
                    ("/api/reports/daily_usage", "bearer s3cret-token"), ("/health_check", nil),
                    ("/readiness_check", nil),
                    ("/openapi.json", nil),
                ] {
                    let headers: HTTPFields = authorization.map { [.authorization: $0] } ?? [:]
                    try await client.execute(uri: uri, method: .get, headers: headers) { response in
                        let body = response.status == .unauthorized ? " " + String(buffer: response.body) : ""
                        answers.append(
                            "\(uri) \(response.status.code) \(response.headers[.wwwAuthenticate] ?? "-")\(body)")
                    }
                }
                return answers
            }
            let realm = #"Bearer realm="coworking reports""#
            #expect(
                answers == [
                    #"/api/reports/summary 401 \#(realm) {"error":"this API needs Authorization: Bearer <token>"}"#,
                    #"/api/reports/summary 401 \#(realm), error="invalid_token" {"error":"the bearer token is not valid"}"#,
                    #"/api/reports/user_visits 401 \#(realm), error="invalid_token" {"error":"the bearer token is not valid"}"#,
                    "/api/reports/summary 200 -", "/api/reports/daily_usage 200 -", "/health_check 200 -",
                    "/readiness_check 200 -", "/openapi.json 200 -",
                ])
        }
    }

    /// An attacker's spellings of the reports' paths, sent as they are on a socket: whatever the router makes of them,
    /// none reaches a report without the token. The routes anyone may reach stay open, and the token still opens a
    /// route however its path is spelled.
    @Test func noSpellingOfAPathReachesAReportWithoutTheToken() async throws {
        let path = try ReportAPIFixture.tokensFile(ReportAPIFixture.digest + "\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await Schemas.withMigrated(users: 3) { schema in
            let router = try ReportAPIFixture.router(schema: schema, tokensFile: path)
            try await Application(router: router).test(.live) { client in
                let port = try #require(client.port)
                func status(_ path: String, token: String? = nil) async throws -> String {
                    let answer = try await HTTPGet.text(
                        port: port, path: path, authorization: token.map { "Bearer " + $0 })
                    return answer.components(separatedBy: "\r\n")[0]
                }
                let spellings = [
                    "//api/reports/user_visits", "///api/reports/daily_usage",
                    "//api/reports/unique_visitors?format=csv",
                    "/api//reports/summary", "/api/reports//top_members", "/./api/reports/summary",
                    "/api/./reports/summary", "/api/reports/../reports/summary", "/api%2Freports%2Fsummary",
                    "/api/reports%2Fsummary", "/api/reports/summary/", "//api/reports/user_visits/?limit=5",
                    "/API/reports/summary", "/api/reports/SUMMARY", "/api/reports/filters//",
                ]
                for spelling in spellings {
                    let line = try await status(spelling)
                    #expect(
                        line == "HTTP/1.1 401 Unauthorized" || line == "HTTP/1.1 404 Not Found",
                        "\(spelling) answered \(line.debugDescription)")
                }
                for spelling in ["//api/reports/user_visits", "/api//reports/summary", "/api/reports/summary/"] {
                    #expect(try await status(spelling) == "HTTP/1.1 401 Unauthorized", "\(spelling)")
                    #expect(try await status(spelling, token: "s3cret-token") == "HTTP/1.1 200 OK", "\(spelling)")
                }
                for open in ["/", "/openapi.json", "/health_check", "/readiness_check", "/metrics", "//health_check"] {
                    #expect(try await status(open) == "HTTP/1.1 200 OK", "\(open)")
                }
                let page = try await HTTPGet.text(port: port, path: "/")
                let script = try #require(page.firstMatch(of: /\/dashboard\/app\.js\?v=[0-9a-f]+/))
                #expect(try await status(String(script.0)) == "HTTP/1.1 200 OK")
            }
        }
    }

    @Test func metricsMoveToTheirOwnPort() async throws {
        let (appPort, metricsPort) = (TestServers.freePort(), TestServers.freePort())
        let process = Process()
        process.executableURL = Programs.executable("report-api")
        process.environment = ProcessInfo.processInfo.environment.merging([
            "APP_PORT": "\(appPort)", "API_METRICS_PORT": "\(metricsPort)", "BIND_ADDRESS": "127.0.0.1",
            "LOG_LEVEL": "error",
        ]) { _, changed in changed }
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        defer { Programs.stop(process) }
        var health = ""
        try await Waiting.until(within: .seconds(30)) {
            health = try await HTTPGet.text(port: appPort, path: "/health_check")
            return health.hasPrefix("HTTP/1.1 200") || !process.isRunning
        }
        guard health.hasPrefix("HTTP/1.1 200") else {
            let said =
                process.isRunning
                ? "not answering after 30 s"
                : String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("report-api: \(said)")
            return
        }
        // The metrics' server starts beside the reports' one, and may listen a moment after it.
        var metrics = ""
        try await Waiting.until(within: .seconds(30)) {
            metrics = try await HTTPGet.text(port: metricsPort, path: "/metrics")
            return !metrics.isEmpty
        }
        #expect(metrics.hasPrefix("HTTP/1.1 200"))
        #expect(try await HTTPGet.text(port: appPort, path: "/metrics").hasPrefix("HTTP/1.1 404"))
    }
}
