import AMQPClient
import Foundation
import Logging
import Pipeline
import PostgresClient
import Synchronization
import Testing

/// The real RabbitMQ and PostgreSQL that `scripts/services up` starts, found through the variables it prints.
/// A missing variable fails the test with a message saying how to start the servers: CI always has them.
public enum TestServers {
    public static func variable(_ name: String) throws -> String {
        try #require(
            ProcessInfo.processInfo.environment[name],
            "\(name) is not set: run scripts/test, or eval \"$(scripts/services up)\" before swift test")
    }

    /// The broker's settings, with the tests' timeout.
    public static func amqp() throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(url: variable("AMQP_URL"), variable: "AMQP_URL")
        configuration.timeoutSeconds = amqpTimeoutSeconds
        return configuration
    }

    /// How long a test's broker connection waits for each step: longer than the programs' default, since tests run
    /// side by side and a busy broker may take seconds to declare each of their quorum queues. A broker that hangs
    /// still fails the test.
    public static let amqpTimeoutSeconds = 30

    /// The owner role's database settings, in a schema of the test's own.
    public static func database(schema: String = "public") throws -> PostgresConfiguration {
        var configuration = try PostgresConfiguration(url: variable("DATABASE_URL"), variable: "DATABASE_URL")
        configuration.schema = schema
        return configuration
    }

    /// The SELECT-only role's database settings.
    public static func readerDatabase(schema: String) throws -> PostgresConfiguration {
        var configuration = try PostgresConfiguration(url: variable("READER_DATABASE_URL"), variable: "DATABASE_URL")
        configuration.schema = schema
        return configuration
    }

    /// A name no other test uses, so that tests running in parallel never share a queue or a schema.
    public static func uniqueName(_ prefix: String) -> String {
        "test_\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
    }

    public static let logger = Logger(label: "test")

    /// The report API's zones when a test folds UTC only.
    public static let utcZones = ReportZones(folded: ["UTC"], defaultZone: "UTC")

    /// The repository's root, for its scripts, manifests and seed data.
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// Starts whatever node of the RabbitMQ cluster (or the PostgreSQL standby) is down.
    public static func startStoppedNodes() {
        Programs.shell(repository.appendingPathComponent("scripts/services").path + " cluster-up")
    }
}

/// A log handler that keeps what it is given, to check what a component logs.
public struct CapturingLogHandler: LogHandler {
    public struct Entry: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: Logger.Metadata
    }

    public final class Store: Sendable {
        public let entries = Mutex<[Entry]>([])
    }

    public let store: Store
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .trace

    public init(store: Store) {
        self.store = store
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        store.entries.withLock {
            $0.append(Entry(level: event.level, message: event.message.description, metadata: event.metadata ?? [:]))
        }
    }

    public static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "capture") { _ in CapturingLogHandler(store: store) }, store)
    }
}

extension AMQPDelivery {
    /// The properties, or nil when they cannot be copied (which fails the comparison that reads them).
    public var copiedProperties: AMQPProperties? { try? properties() }
}
