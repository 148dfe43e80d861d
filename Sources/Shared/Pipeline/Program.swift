import Basics
import Foundation
import Logging

/// What every program does at start and at a fatal error, so that all three behave alike for operators. A program
/// that succeeds returns from `main`; one that fails exits with a status, once the services that hold connections
/// have closed them (each closes its own, with its thread, on every path), so that no thread is inside a C library
/// while the process exits.
public enum Program {
    /// Reads the configuration; a bad setting prints its one line to standard error and exits with status 2.
    public static func configuration<T>(_ parse: () throws(ConfigurationError) -> T) -> T {
        do {
            return try parse()
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            Foundation.exit(2)
        }
    }

    /// Sends logs to standard error at `level`, with metadata as `key=value`. Called once, by `main`.
    public static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
    }

    /// Logs `error` with its details for the operator and exits with status 1. The log line holds the
    /// error's `debugDescription` (server text, SQLSTATE) but never a credential, and no stack trace.
    public static func exit(after error: any Error, logger: Logger, _ message: Logger.Message) -> Never {
        logger.critical(message, metadata: [LogKey.error: "\(String(reflecting: error))"])
        Foundation.exit(1)
    }

    /// Runs `work`; a failure is logged as `message`, with the error, and ends the process with status 1.
    public static func run<T>(_ message: Logger.Message, logger: Logger, _ work: () async throws -> T) async -> T {
        do {
            return try await work()
        } catch {
            exit(after: error, logger: logger, message)
        }
    }
}

/// `StreamLogHandler`'s lines, with the logger's own metadata formatted only when a line is written.
/// `StreamLogHandler` formats it whenever it changes, and Hummingbird gives every request's logger a request id, so
/// the report API paid for formatting it on every request, to log nothing (its cost: docs/benchmarks.md).
struct LineLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(_ stream: StreamLogHandler) {
        self.stream = stream
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The logger's metadata, then the provider's, then the line's own, each overriding the one before, as
    /// `StreamLogHandler` merges them; control characters escaped, since values carry text from messages,
    /// requests and servers.
    func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty {
            var merged = metadata
            merged.merge(metadataProvider?.get() ?? [:]) { _, provided in provided }
            merged.merge(event.metadata ?? [:]) { _, explicit in explicit }
            event.metadata = merged
        }
        event.message = "\(event.message.description.escapingControlCharacters)"
        event.metadata = event.metadata?.mapValues(\.escapingControlCharacters)
        stream.log(event: event)
    }
}

extension Logger.MetadataValue {
    fileprivate var escapingControlCharacters: Logger.MetadataValue {
        switch self {
        case .string(let text): .string(text.escapingControlCharacters)
        case .stringConvertible(let value): .string(value.description.escapingControlCharacters)
        case .array(let values): .array(values.map(\.escapingControlCharacters))
        case .dictionary(let values): .dictionary(values.mapValues(\.escapingControlCharacters))
        }
    }
}

extension Logger {
    /// The logger to give an HTTP framework's server: the program reports a failure that stops the server in one
    /// line of its own, so the framework's lines about the same failure (shutdown errors, cancelled children) are
    /// kept out, and only what it deems critical is let through.
    public var forFramework: Logger {
        var logger = self
        logger.logLevel = .critical
        return logger
    }
}
