import Basics
import Foundation
import PostgresClient

extension PostgresConfiguration {
    /// `DATABASE_URL` when set (it wins), else `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USERNAME`, `DB_PASSWORD`,
    /// `DB_SSLMODE` and `DB_SSLROOTCERT` (libpq's `sslmode` and `sslrootcert`: `verify-full` with the CA of a managed
    /// database); `DB_SCHEMA` and `DB_TARGET_SESSION_ATTRS` in both cases.
    ///
    /// Several servers (`host1:5432,host2:5433` in the URL, or lists in `DB_HOST` and `DB_PORT`) are a primary and
    /// its standbys: a connection settles on one by libpq's `target_session_attrs`, from `DB_TARGET_SESSION_ATTRS` or
    /// the URL's query, else `sessionAttributes`, the program's own need (`read-write` to write, `prefer-standby` to
    /// read).
    public static func fromEnvironment(
        _ environment: EnvironmentVariables, applicationName: String, sessionAttributes: String = "read-write"
    ) throws(ConfigurationError) -> PostgresConfiguration {
        var configuration: PostgresConfiguration
        if let url = environment["DATABASE_URL"] {
            configuration = try PostgresConfiguration(url: url, variable: "DATABASE_URL")
        } else {
            configuration = PostgresConfiguration(
                servers: try servers(hosts: environment["DB_HOST"] ?? "localhost", environment: environment),
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
        if let attributes = environment["DB_TARGET_SESSION_ATTRS"] {
            configuration.options["target_session_attrs"] = try Self.checkedSessionAttributes(
                attributes, variable: "DB_TARGET_SESSION_ATTRS")
        } else if configuration.servers.count > 1, configuration.options["target_session_attrs"] == nil {
            configuration.options["target_session_attrs"] = sessionAttributes
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

    /// The servers of `DB_HOST` and `DB_PORT`: as many ports as hosts, or one port for all of them, as libpq reads
    /// them.
    private static func servers(hosts list: String, environment: EnvironmentVariables) throws(ConfigurationError)
        -> [Server]
    {
        let hosts = list.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !hosts.contains(where: \.isEmpty) else {
            throw ConfigurationError(variable: "DB_HOST", problem: "has an empty host in its list")
        }
        var ports = [5432]
        if let portList = environment["DB_PORT"] {
            ports = []
            for port in portList.split(separator: ",", omittingEmptySubsequences: false) {
                let text = port.trimmingCharacters(in: .whitespaces)
                guard let number = Int(text), (1...65_535).contains(number) else {
                    throw ConfigurationError(
                        variable: "DB_PORT", problem: "must be an integer from 1 to 65535, got \(text.quoted())")
                }
                ports.append(number)
            }
        }
        guard ports.count == 1 || ports.count == hosts.count else {
            throw ConfigurationError(
                variable: "DB_PORT",
                problem: "lists \(ports.count) ports for \(hosts.count) hosts (give one, or one per host)")
        }
        return hosts.indices.map { Server(host: hosts[$0], port: ports.count == 1 ? ports[0] : ports[$0]) }
    }
}
