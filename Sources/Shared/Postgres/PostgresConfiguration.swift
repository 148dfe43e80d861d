import Basics
import Foundation

/// Where and how to reach PostgreSQL: one server, or a primary and its standbys, of which libpq picks one by
/// `target_session_attrs`.
public struct PostgresConfiguration: Sendable, Equatable {
    /// The servers, in the order given; libpq tries them in turn.
    public var servers: [Server]
    /// The database's name.
    public var database: String
    /// The role to log in as.
    public var user: String
    /// The role's password, if any (a `.pgpass` file or trust authentication may do instead).
    public var password: String?
    /// The schema that unqualified table names resolve in (`search_path`), default `public`. Lets several
    /// applications, or tests, share one database.
    public var schema: String
    /// Further libpq keywords, such as a URL's query gives (`sslmode`, `connect_timeout`, ...).
    public var options: [String: String]
    /// Shown in `pg_stat_activity`, to tell the programs apart.
    public var applicationName: String
    /// The server cancels a statement that runs longer (`statement_timeout`); nil for no limit.
    public var statementTimeout: Duration?

    /// One server's address.
    public struct Server: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int = 5432) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public init(
        servers: [Server] = [Server(host: "localhost")], database: String, user: String, password: String? = nil,
        schema: String = "public", options: [String: String] = [:], applicationName: String = "coworking"
    ) {
        self.servers = servers
        self.database = database
        self.user = user
        self.password = password
        self.schema = schema
        self.options = options
        self.applicationName = applicationName
    }

    /// libpq's `sslmode` values, weakest first.
    public static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    /// libpq's `target_session_attrs` values: which of several servers a connection settles on.
    public static let sessionAttributes = ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]

    /// The libpq keywords this configuration may pass on from a URL's query.
    public static let passedOptions: Set<String> = [
        "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "target_session_attrs", "keepalives_idle",
    ]

    public static func checkedSessionAttributes(_ value: String, variable: String) throws(ConfigurationError) -> String
    {
        guard Self.sessionAttributes.contains(value) else {
            throw ConfigurationError(
                variable: variable,
                problem: "must be one of \(Self.sessionAttributes.joined(separator: ", ")), got \(value.quoted())")
        }
        return value
    }

    /// Parses `postgresql://user:password@host:port/database?sslmode=require`, or with several servers,
    /// `postgresql://user:password@primary:5432,standby:5432/database?target_session_attrs=prefer-standby`. Errors
    /// name `variable` and never echo the URL, which holds a password.
    public init(url: String, variable: String) throws(ConfigurationError) {
        func invalid(_ problem: String) -> ConfigurationError {
            ConfigurationError(variable: variable, problem: problem)
        }
        // URLComponents reads one host: the list is read here, and the URL parsed with its first server alone.
        var single = url
        var servers: [Server] = []
        if let authority = Self.hostList(of: url), url[authority].contains(",") {
            for text in url[authority].split(separator: ",", omittingEmptySubsequences: false) {
                guard let server = URLComponents(string: "postgresql://\(text)"), let host = server.host, !host.isEmpty
                else { throw invalid("has an empty or malformed host in its list of servers") }
                guard (1...65_535).contains(server.port ?? 5432) else { throw invalid("has a port out of range") }
                servers.append(Server(host: Self.unbracketed(host), port: server.port ?? 5432))
            }
            single.replaceSubrange(authority, with: url[authority].prefix { $0 != "," })
        }
        guard let components = URLComponents(string: single),
            let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw invalid("must be a URL such as postgresql://user:password@host:5432/database")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !database.isEmpty else { throw invalid("names no database (the path after the host)") }
        guard let user = components.user, !user.isEmpty else { throw invalid("names no user") }
        if servers.isEmpty {
            let port = components.port ?? 5432
            guard (1...65_535).contains(port) else { throw invalid("has a port out of range") }
            let host = components.host.flatMap { $0.isEmpty ? nil : Self.unbracketed($0) } ?? "localhost"
            servers = [Server(host: host, port: port)]
        }
        var options: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard Self.passedOptions.contains(item.name), let value = item.value else {
                let known = Self.passedOptions.sorted().joined(separator: ", ")
                throw invalid("has an unsupported query parameter \(item.name) (supported: \(known))")
            }
            options[item.name] =
                item.name == "target_session_attrs"
                ? try Self.checkedSessionAttributes(value, variable: variable) : value
        }
        self.init(servers: servers, database: database, user: user, password: components.password, options: options)
    }

    /// An IPv6 address as libpq takes it: without the brackets a URL puts around it.
    private static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    /// The range of `url` between the user's `@` (or the scheme's `//`) and the path: its host list.
    private static func hostList(of url: String) -> Range<String.Index>? {
        guard let scheme = url.range(of: "://") else { return nil }
        let end = url[scheme.upperBound...].firstIndex { $0 == "/" || $0 == "?" } ?? url.endIndex
        let start = url[scheme.upperBound..<end].lastIndex(of: "@").map { url.index(after: $0) } ?? scheme.upperBound
        return start..<end
    }

    /// The same settings, settling on the primary when several servers are given: for what a standby cannot do,
    /// such as listening for notifications.
    public var primary: PostgresConfiguration {
        guard servers.count > 1 else { return self }
        var primary = self
        primary.options["target_session_attrs"] = "read-write"
        return primary
    }

    /// The libpq connection keywords and values; values are passed as data, never spliced into a string.
    var connectionParameters: [(String, String)] {
        var parameters: [(String, String)] = [
            ("host", servers.map(\.host).joined(separator: ",")),
            ("port", servers.map { String($0.port) }.joined(separator: ",")), ("dbname", database), ("user", user),
            ("application_name", applicationName), ("client_encoding", "UTF8"), ("connect_timeout", "5"),
            // Timestamps come back in UTC, and unqualified table names resolve in `schema`. No JIT: the statements
            // of short transactions take milliseconds, and compiling one took hundreds when a row estimate was off
            // (a join with a table too small for autovacuum to analyze; docs/benchmarks.md).
            ("options", "-c TimeZone=UTC -c search_path=\(schema) -c jit=off" + statementTimeoutOption),
            // A peer that vanished without closing (a host lost, a network cut) is noticed within a minute, rather
            // than after the kernel's default of about two hours of retransmissions, during which a thread blocks.
            ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
            ("tcp_user_timeout", "60000"),
        ]
        if let password { parameters.append(("password", password)) }
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            parameters.removeAll { $0.0 == key }
            parameters.append((key, value))
        }
        return parameters
    }
}

extension PostgresConfiguration {
    fileprivate var statementTimeoutOption: String {
        guard let statementTimeout else { return "" }
        return " -c statement_timeout=\(Int(statementTimeout / .milliseconds(1)))"
    }
}

extension PostgresConfiguration {
    /// Whether `name` is a lower-case SQL identifier that needs no quoting: safe to place in SQL text.
    public static func isPlainIdentifier(_ name: String) -> Bool {
        guard let first = name.utf8.first, (1...63).contains(name.utf8.count), !first.isASCIIDigit else { return false }
        return name.utf8.allSatisfy {
            $0.isASCIIDigit || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: "_")
        }
    }
}
