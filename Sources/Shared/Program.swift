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
            Foundation.exit(2)
        }
    }

    /// Sends logs to standard error at `level`, with metadata as `key=value`. Called once, by `main`.
    public static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
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
}
