import Foundation

/// Where and how to reach PostgreSQL.
public struct PostgresConfiguration: Sendable, Equatable {
    /// `DB_HOST`, default `localhost`.
    public var host: String
    /// `DB_PORT`, default 5432.
    public var port: Int
    /// `DB_NAME`, required unless `DATABASE_URL` is set.
    public var database: String
    /// `DB_USERNAME`, required unless `DATABASE_URL` is set.
    public var user: String
    /// `DB_PASSWORD`, optional (a `.pgpass` file or trust authentication may do instead).
    public var password: String?
    /// `DB_SCHEMA`: the schema of the pipeline's tables, default `public`. Lets several pipelines, or tests,
    /// share one database.
    public var schema: String
    /// Further libpq keywords from the query of `DATABASE_URL` (`sslmode`, `connect_timeout`, ...).
    public var options: [String: String]
    /// Shown in `pg_stat_activity`, to tell the programs apart.
    public var applicationName: String
    /// The server cancels a statement that runs longer (`statement_timeout`); nil for no limit.
    public var statementTimeout: Duration?

    public init(
        host: String = "localhost", port: Int = 5432, database: String, user: String, password: String? = nil,
        schema: String = "public", options: [String: String] = [:], applicationName: String = "coworking"
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        self.schema = schema
        self.options = options
        self.applicationName = applicationName
    }

    /// libpq's `sslmode` values, weakest first.
    static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    /// The libpq keywords this configuration may pass on from a URL's query.
    public static let passedOptions: Set<String> = [
        "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "target_session_attrs", "keepalives_idle",
    ]

    /// `DATABASE_URL` when set (it wins), else `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USERNAME`, `DB_PASSWORD`,
    /// `DB_SSLMODE` and `DB_SSLROOTCERT` (libpq's `sslmode` and `sslrootcert`: `verify-full` with the CA of a managed
    /// database); `DB_SCHEMA` in both cases.
    public static func fromEnvironment(_ environment: EnvironmentVariables, applicationName: String)
        throws(ConfigurationError)
        -> PostgresConfiguration
    {
        var configuration: PostgresConfiguration
        if let url = environment["DATABASE_URL"] {
            configuration = try PostgresConfiguration(url: url, variable: "DATABASE_URL")
        } else {
            configuration = PostgresConfiguration(
                host: environment["DB_HOST"] ?? "localhost",
                port: try environment.integer("DB_PORT", default: 5432, in: 1...65_535),
                database: try environment.required("DB_NAME"),
                user: try environment.required("DB_USERNAME"),
                password: environment["DB_PASSWORD"]
            )
            if let mode = environment["DB_SSLMODE"] {
                guard Self.sslModes.contains(mode) else {
                    throw ConfigurationError(
                        variable: "DB_SSLMODE",
                        problem: "must be one of \(Self.sslModes.joined(separator: ", ")), got \(mode.quoted())")
                }
                configuration.options["sslmode"] = mode
            }
            if let rootCertificate = environment["DB_SSLROOTCERT"] {
                guard FileManager.default.isReadableFile(atPath: rootCertificate) else {
                    throw ConfigurationError(
                        variable: "DB_SSLROOTCERT", problem: "names no readable file \(rootCertificate.quoted())")
                }
                configuration.options["sslrootcert"] = rootCertificate
            }
        }
        if let schema = environment["DB_SCHEMA"] {
            guard Self.isPlainIdentifier(schema) else {
                throw ConfigurationError(
                    variable: "DB_SCHEMA",
                    problem: "must be a lower-case SQL identifier (a-z, 0-9, _), got \(schema.quoted())")
            }
            configuration.schema = schema
        }
        configuration.applicationName = applicationName
        return configuration
    }

    /// Parses `postgresql://user:password@host:port/database?sslmode=require`. Errors name `variable` and never
    /// echo the URL, which holds a password.
    public init(url: String, variable: String = "DATABASE_URL") throws(ConfigurationError) {
        func invalid(_ problem: String) -> ConfigurationError {
            ConfigurationError(variable: variable, problem: problem)
        }
        guard let components = URLComponents(string: url),
            let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw invalid("must be a URL such as postgresql://user:password@host:5432/database")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !database.isEmpty else { throw invalid("names no database (the path after the host)") }
        guard let user = components.user, !user.isEmpty else { throw invalid("names no user") }
        var port = 5432
        if let given = components.port {
            guard (1...65_535).contains(given) else { throw invalid("has a port out of range") }
            port = given
        }
        var options: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard Self.passedOptions.contains(item.name), let value = item.value else {
                let known = Self.passedOptions.sorted().joined(separator: ", ")
                throw invalid("has an unsupported query parameter \(item.name) (supported: \(known))")
            }
            options[item.name] = value
        }
        self.init(
            host: components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "localhost", port: port, database: database,
            user: user, password: components.password, options: options)
    }

    /// The libpq connection keywords and values; values are passed as data, never spliced into a string.
    var connectionParameters: [(String, String)] {
        var parameters: [(String, String)] = [
            ("host", host), ("port", String(port)), ("dbname", database), ("user", user),
            ("application_name", applicationName), ("client_encoding", "UTF8"), ("connect_timeout", "5"),
            // Timestamps come back in UTC, and unqualified table names resolve in the pipeline's schema. No JIT:
            // every statement here takes milliseconds, and compiling one took hundreds when a row estimate was
            // off (the fold joins the few rows of `report_zones`, a table too small for autovacuum to analyze).
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
        guard let first = name.utf8.first, (1...63).contains(name.utf8.count), !isDigit(first) else { return false }
        return name.utf8.allSatisfy {
            isDigit($0) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: "_")
        }
    }
}
