import AMQPClient
import Basics
import Logging
import Pipeline
import PostgresClient
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    @Test func databaseSettingsComeFromTheLegacyVariables() throws {
        let configuration = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables([
                "DB_HOST": "db.internal", "DB_PORT": "6432", "DB_NAME": "coworking", "DB_USERNAME": "app",
                "DB_PASSWORD": "s3cret",
            ]), applicationName: "test")
        #expect(
            configuration
                == PostgresConfiguration(
                    servers: [.init(host: "db.internal", port: 6432)], database: "coworking", user: "app",
                    password: "s3cret",
                    applicationName: "test"))
    }

    @Test func databaseURLWinsOverTheLegacyVariables() throws {
        let configuration = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables([
                "DATABASE_URL": "postgresql://u%40x:p%2Fw@pg:5433/analytics?sslmode=require",
                "DB_HOST": "ignored", "DB_PORT": "not a port", "DB_SCHEMA": "tenant_7",
            ]), applicationName: "test")
        #expect(configuration.servers == [.init(host: "pg", port: 5433)])
        #expect(configuration.database == "analytics")
        #expect(configuration.user == "u@x")
        #expect(configuration.password == "p/w")
        #expect(configuration.options == ["sslmode": "require"])
        #expect(configuration.schema == "tenant_7")
    }

    @Test func severalDatabaseServersInAURLAreAPrimaryAndItsStandbys() throws {
        let url = "postgresql://app:pw@pg-primary:5432,pg-standby,[::1]:5433/coworking?sslmode=require"
        let writer = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables(["DATABASE_URL": url]), applicationName: "test")
        #expect(
            writer.servers == [
                .init(host: "pg-primary", port: 5432), .init(host: "pg-standby", port: 5432),
                .init(host: "::1", port: 5433),
            ])
        #expect(writer.user == "app")
        #expect(writer.password == "pw")
        #expect(writer.database == "coworking")
        #expect(writer.options == ["sslmode": "require", "target_session_attrs": "read-write"])

        let reader = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables(["DATABASE_URL": url]), applicationName: "test", sessionAttributes: "prefer-standby")
        #expect(reader.options["target_session_attrs"] == "prefer-standby")
        let chosen = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables(["DATABASE_URL": url + "&target_session_attrs=standby"]), applicationName: "test",
            sessionAttributes: "prefer-standby")
        #expect(chosen.options["target_session_attrs"] == "standby")
    }

    @Test func severalDatabaseServersInTheLegacyVariablesTakeOnePortOrOneEach() throws {
        let shared = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables(["DB_HOST": "a, b", "DB_PORT": "6432", "DB_NAME": "c", "DB_USERNAME": "u"]),
            applicationName: "test", sessionAttributes: "prefer-standby")
        #expect(shared.servers == [.init(host: "a", port: 6432), .init(host: "b", port: 6432)])
        #expect(shared.options == ["target_session_attrs": "prefer-standby"])
        let each = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables([
                "DB_HOST": "a,b", "DB_PORT": "5432,5433", "DB_NAME": "c", "DB_USERNAME": "u",
                "DB_TARGET_SESSION_ATTRS": "primary",
            ]), applicationName: "test", sessionAttributes: "prefer-standby")
        #expect(each.servers == [.init(host: "a", port: 5432), .init(host: "b", port: 5433)])
        #expect(each.options == ["target_session_attrs": "primary"])
        let single = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables(["DB_HOST": "a", "DB_NAME": "c", "DB_USERNAME": "u"]), applicationName: "test",
            sessionAttributes: "prefer-standby")
        #expect(single.options.isEmpty, "one server needs no choice, and prefer-standby would connect twice to it")
    }

    @Test func databaseTLSComesFromItsOwnVariablesWithoutAURL() throws {
        let configuration = try PostgresConfiguration.fromEnvironment(
            EnvironmentVariables([
                "DB_HOST": "db.example", "DB_NAME": "coworking", "DB_USERNAME": "app", "DB_SSLMODE": "verify-full",
                "DB_SSLROOTCERT": "/etc/hostname",
            ]), applicationName: "test")
        #expect(configuration.options == ["sslmode": "verify-full", "sslrootcert": "/etc/hostname"])
    }

    @Test(
        "a bad database setting names its variable, and never echoes a password",
        arguments: [
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_SSLMODE": "on"],
                #"configuration error: DB_SSLMODE must be one of disable, allow, prefer, require, verify-ca, verify-full, got "on""#
            ),
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_SSLROOTCERT": "/no/such/ca.pem"],
                #"configuration error: DB_SSLROOTCERT names no readable file "/no/such/ca.pem""#
            ),
            (["DB_USERNAME": "app"], "configuration error: DB_NAME is required"),
            (["DB_NAME": "x"], "configuration error: DB_USERNAME is required"),
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_PORT": "70000"],
                #"configuration error: DB_PORT must be an integer from 1 to 65535, got "70000""#
            ),
            (
                ["DATABASE_URL": "mysql://u:hunter2@h/db"],
                "configuration error: DATABASE_URL must be a URL such as postgresql://user:password@host:5432/database"
            ),
            (
                ["DATABASE_URL": "postgresql://u:hunter2@h/"],
                "configuration error: DATABASE_URL names no database (the path after the host)"
            ),
            (
                ["DATABASE_URL": "postgresql://u:hunter2@h/db?password=x"],
                "configuration error: DATABASE_URL has an unsupported query parameter password (supported: connect_timeout, keepalives_idle, sslcert, sslkey, sslmode, sslrootcert, target_session_attrs)"
            ),
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_HOST": "a,b,c", "DB_PORT": "1,2"],
                "configuration error: DB_PORT lists 2 ports for 3 hosts (give one, or one per host)"
            ),
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_HOST": "a,,b"],
                "configuration error: DB_HOST has an empty host in its list"
            ),
            (
                ["DB_NAME": "x", "DB_USERNAME": "y", "DB_TARGET_SESSION_ATTRS": "standby-please"],
                #"configuration error: DB_TARGET_SESSION_ATTRS must be one of any, read-write, read-only, primary, standby, prefer-standby, got "standby-please""#
            ),
            (
                ["DATABASE_URL": "postgresql://u:hunter2@a:5432,:5433/db"],
                "configuration error: DATABASE_URL has an empty or malformed host in its list of servers"
            ),
            (
                ["DATABASE_URL": "postgresql://u:hunter2@a,b:99999/db"],
                "configuration error: DATABASE_URL has a port out of range"
            ),
            (
                ["DATABASE_URL": "postgresql://u@h/db", "DB_SCHEMA": "Robert'); DROP"],
                #"configuration error: DB_SCHEMA must be a lower-case SQL identifier (a-z, 0-9, _), got "Robert'); DROP""#
            ),
        ])
    func badDatabaseSetting(_ values: [String: String], _ line: String) {
        #expect(throws: ConfigurationError.self) {
            try PostgresConfiguration.fromEnvironment(EnvironmentVariables(values), applicationName: "test")
        }
        do {
            _ = try PostgresConfiguration.fromEnvironment(EnvironmentVariables(values), applicationName: "test")
        } catch {
            #expect(error.description == line)
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func amqpURLDefaultsAndDecodesTheVirtualHost() throws {
        #expect(try AMQPConfiguration.fromEnvironment(EnvironmentVariables([:])) == AMQPConfiguration())
        let configuration = try AMQPConfiguration(
            url: "amqp://svc:p%40ss@mq.internal:5673/%2Fprod?heartbeat=10", variable: "AMQP_URL")
        #expect(configuration.nodes == [.init(host: "mq.internal", port: 5673)])
        #expect(configuration.user == "svc")
        #expect(configuration.password == "p@ss")
        #expect(configuration.virtualHost == "/prod")
        #expect(configuration.heartbeatSeconds == 10)
        #expect(try AMQPConfiguration(url: "amqp://h", variable: "AMQP_URL").virtualHost == "/")
        #expect(try AMQPConfiguration(url: "amqp://h/%2F", variable: "AMQP_URL").virtualHost == "/")
        #expect(try AMQPConfiguration(url: "amqp://h/analytics", variable: "AMQP_URL").virtualHost == "analytics")
    }

    @Test func aClusterIsAListOfURLsThatDifferOnlyInHostAndPort() throws {
        let cluster = try AMQPConfiguration.fromEnvironment(
            EnvironmentVariables([
                "AMQP_URL": "amqp://svc:pw@mq-0:5672/%2F?heartbeat=10, amqp://svc:pw@mq-1/%2F?heartbeat=10,"
                    + "amqp://svc:pw@mq-2:5673/%2F?heartbeat=10"
            ]))
        #expect(
            cluster.nodes == [
                .init(host: "mq-0", port: 5672), .init(host: "mq-1", port: 5672), .init(host: "mq-2", port: 5673),
            ])
        #expect(cluster.user == "svc")
        #expect(cluster.heartbeatSeconds == 10)
        #expect(cluster.nodes.map(\.description) == ["mq-0:5672", "mq-1:5672", "mq-2:5673"])
    }

    @Test(
        "a bad AMQP URL names AMQP_URL",
        arguments: [
            ("http://u:hunter2@h/", "configuration error: AMQP_URL must start with amqp:// or amqps://"),
            ("amqp://u:hunter2@h/a/b", "configuration error: AMQP_URL has a malformed virtual host (write / as %2F)"),
            (
                "amqp://u:hunter2@h/?heartbeat=soon",
                "configuration error: AMQP_URL has a non-numeric query parameter heartbeat"
            ),
            (
                "amqp://u:hunter2@h/?frame_max=1",
                "configuration error: AMQP_URL has an unknown query parameter frame_max (known: heartbeat, connection_timeout)"
            ),
            (
                "amqp://u:hunter2@h1/,amqp://other:hunter2@h2/",
                "configuration error: AMQP_URL lists URLs that differ in more than host and port (a cluster shares users and vhosts)"
            ),
            (
                "amqp://u:hunter2@h1/,amqps://u:hunter2@h2/",
                "configuration error: AMQP_URL lists URLs that differ in more than host and port (a cluster shares users and vhosts)"
            ),
            (" , ", "configuration error: AMQP_URL must be a URL such as amqp://user:pass@host:5672/vhost"),
        ])
    func badAMQPURL(_ url: String, _ line: String) {
        do {
            _ = try AMQPConfiguration.fromEnvironment(EnvironmentVariables(["AMQP_URL": url]))
            Issue.record("accepted \(url)")
        } catch {
            #expect(error.description == line)
        }
    }

    @Test func anAMQPSURLSpeaksTLSVerifiedAgainstTheSystemBundleUnlessAnotherIsNamed() throws {
        let system = try AMQPConfiguration.fromEnvironment(
            EnvironmentVariables(["AMQP_URL": "amqps://u:p@broker.example/"]))
        #expect(system.nodes == [.init(host: "broker.example", port: 5671)])
        #expect(system.tls == AMQPConfiguration.TLS(caCertificatePath: "/etc/ssl/certs/ca-certificates.crt"))
        let named = try AMQPConfiguration.fromEnvironment(
            EnvironmentVariables([
                "AMQP_URL": "amqps://u:p@broker.example:5999/", "AMQP_CACERT": "/etc/hostname",
                "AMQP_CERT": "/etc/hostname", "AMQP_KEY": "/etc/hostname",
            ]))
        #expect(named.nodes == [.init(host: "broker.example", port: 5999)])
        #expect(
            named.tls
                == AMQPConfiguration.TLS(
                    caCertificatePath: "/etc/hostname", certificatePath: "/etc/hostname", keyPath: "/etc/hostname"))
        #expect(try AMQPConfiguration.fromEnvironment(EnvironmentVariables(["AMQP_URL": "amqp://u:p@h/"])).tls == nil)
        #expect(throws: ConfigurationError(variable: "AMQP_KEY", problem: "is required with AMQP_CERT")) {
            try AMQPConfiguration.fromEnvironment(
                EnvironmentVariables(["AMQP_URL": "amqps://u:p@h/", "AMQP_CERT": "/etc/hostname"]))
        }
        #expect(
            throws: ConfigurationError(variable: "AMQP_CACERT", problem: #"names no readable file "/no/ca.pem""#)
        ) {
            try AMQPConfiguration.fromEnvironment(
                EnvironmentVariables(["AMQP_URL": "amqps://u:p@h/", "AMQP_CACERT": "/no/ca.pem"]))
        }
    }

    @Test func topologyNamesAndLimits() throws {
        #expect(try Topology.fromEnvironment(EnvironmentVariables([:])) == Topology())
        #expect(Topology().deadLetterQueue == "coworking.dead")
        let custom = try Topology.fromEnvironment(
            EnvironmentVariables(["EXCHANGE": "ev", "QUEUE": "q", "DEAD_LETTER_EXCHANGE": "dl", "DELIVERY_LIMIT": "5"]))
        #expect(custom == Topology(exchange: "ev", queue: "q", deadLetterExchange: "dl", deliveryLimit: 5))
        #expect(
            try Topology.fromEnvironment(EnvironmentVariables(["QUORUM_INITIAL_GROUP_SIZE": "3"])).initialGroupSize == 3
        )
        #expect(throws: ConfigurationError(variable: "QUEUE", problem: "must be at most 255 bytes without spaces")) {
            try Topology.fromEnvironment(EnvironmentVariables(["QUEUE": "my queue"]))
        }
        #expect(
            throws: ConfigurationError(
                variable: "DELIVERY_LIMIT", problem: #"must be an integer from 1 to 1000, got "0""#)
        ) {
            try Topology.fromEnvironment(EnvironmentVariables(["DELIVERY_LIMIT": "0"]))
        }
    }

    @Test func reportZones() throws {
        #expect(
            try ReportZones.fromEnvironment(EnvironmentVariables([:]))
                == ReportZones(folded: ["UTC"], defaultZone: "UTC"))
        let zones = try ReportZones.fromEnvironment(
            EnvironmentVariables([
                "REPORT_TIMEZONES": " Asia/Kolkata,UTC,,Asia/Kolkata, America/St_Johns",
                "REPORT_TIMEZONE": "Asia/Kathmandu",
            ]))
        #expect(
            zones == ReportZones(folded: ["Asia/Kolkata", "UTC", "America/St_Johns"], defaultZone: "Asia/Kathmandu"))
        #expect(throws: ConfigurationError(variable: "REPORT_TIMEZONES", problem: #"names an unknown time zone "IST""#))
        {
            try ReportZones.fromEnvironment(EnvironmentVariables(["REPORT_TIMEZONES": "UTC,IST"]))
        }
        #expect(
            throws: ConfigurationError(
                variable: "REPORT_TIMEZONE", problem: #"names an unknown time zone "Mars/Olympus""#)
        ) {
            try ReportZones.fromEnvironment(EnvironmentVariables(["REPORT_TIMEZONE": "Mars/Olympus"]))
        }
    }

    @Test func eventRulesAndLogLevel() throws {
        #expect(
            try EventRules.fromEnvironment(EnvironmentVariables(["MAX_FUTURE_SKEW_S": "60"])).maxFutureSkewSeconds == 60
        )
        #expect(try EventRules.fromEnvironment(EnvironmentVariables([:])).maxFutureSkewSeconds == 86_400)
        #expect(try Logger.Level.fromEnvironment(EnvironmentVariables(["LOG_LEVEL": "DEBUG"])) == .debug)
        #expect(throws: ConfigurationError.self) {
            try Logger.Level.fromEnvironment(EnvironmentVariables(["LOG_LEVEL": "loud"]))
        }
        #expect(EnvironmentVariables(["X": ""])["X"] == nil, "an empty value counts as unset")
    }
}
