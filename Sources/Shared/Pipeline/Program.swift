import Basics
import Foundation
import Logging

/// What every program does at start and at a fatal error, so that all three behave alike for operators.
public enum Program {
    /// Reads the configuration; a bad setting prints its one line to standard error and exits with status 2.
    public static func configuration<T>(_ parse: () throws(ConfigurationError) -> T) -> T {
        do {
            return try parse()
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            finish(status: 2)
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
        finish(status: 1)
    }

    /// Runs `work`; a failure is logged as `message`, with the error, and ends the process with status 1.
    public static func run<T>(_ message: Logger.Message, logger: Logger, _ work: () async throws -> T) async -> T {
        do {
            return try await work()
        } catch {
            exit(after: error, logger: logger, message)
        }
    }

    /// Ends the process with `status` once its work is done, without the C libraries' exit-time destructors.
    ///
    /// The race this avoids: a connection's thread (`ThreadExecutor`) ends only after its actor's isolated deinit
    /// has closed the handle on it, and `exit` runs the destructors of the libraries libpq loads (OpenSSL, nettle),
    /// which freed memory under a thread still closing its connection: one `consumer run` in about 70 stopped by
    /// SIGTERM aborted on a corrupted heap instead of exiting 0. Joining the threads first cannot be done: a thread
    /// cannot join itself in its deinit, and some connections are never deinitialized before `main` returns (the
    /// report API's pool, which the service group holds to the end; a connection a cancelled task still holds), so
    /// there is no moment when every thread has ended. `_exit` skips only those destructors and `atexit` handlers;
    /// standard output and error are flushed first, and the kernel closes the sockets.
    public static func finish(status: Int32 = 0) -> Never {
        fflush(nil)
        _exit(status)
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
