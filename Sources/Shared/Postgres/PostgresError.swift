/// A failure of the PostgreSQL layer.
///
/// `description` is safe to show a client: it holds the SQLSTATE but no server text, host or statement; those go
/// to `debugDescription`, for logs.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        /// Could not connect or authenticate.
        public static let connectionFailed = Code(description: "connection failed")
        /// The connection broke during a statement; whether it took effect is unknown unless it was in a
        /// transaction that never committed.
        public static let connectionLost = Code(description: "connection lost")
        /// The server rejected a statement; `sqlState` says why.
        public static let statementFailed = Code(description: "statement failed")
        /// A result did not have the expected shape.
        public static let unexpectedResult = Code(description: "unexpected result")
        /// Every connection of a pool stayed in use for as long as a caller may wait for one.
        public static let poolExhausted = Code(description: "no connection free")
        /// The task that ran the statement was cancelled before it started (`withCancellableStatements`).
        public static let cancelled = Code(description: "cancelled")
        /// The pool was closed: its owner is shutting down.
        public static let closed = Code(description: "closed")
    }

    public var code: Code
    /// The five-character SQLSTATE the server reported, such as `40001`.
    public var sqlState: String?
    /// One sentence of what failed, safe for any audience.
    public var message: String
    /// The server's or libpq's own text, for `debugDescription` and logs only.
    public var serverMessage: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil, serverMessage: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.serverMessage = serverMessage
    }

    /// Whether the same work may succeed when tried again: lost connections, serialization failures and
    /// deadlocks, a server that is starting or shutting down, too many connections.
    public var isRetriable: Bool {
        switch code {
        case .connectionFailed, .connectionLost, .poolExhausted: return true
        case .statementFailed:
            guard let sqlState else { return false }
            return Self.retriableStates.contains(sqlState) || sqlState.hasPrefix("08")
        default: return false
        }
    }

    /// Whether the server refused the statement's data (SQLSTATE class 22, a data exception, or 23, a violated
    /// constraint): other data may pass where this did not. A missing table or a refused privilege is not such
    /// a refusal: no data would pass.
    public var isDataRefusal: Bool {
        code == .statementFailed && (sqlState?.hasPrefix("22") == true || sqlState?.hasPrefix("23") == true)
    }

    /// Whether the server cancelled the statement for running past `statement_timeout` (SQLSTATE 57014).
    public var isStatementTimeout: Bool {
        code == .statementFailed && sqlState == "57014"
    }

    private static let retriableStates: Set<String> = ["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"]

    public var description: String {
        sqlState.map { "PostgreSQL \(code) (SQLSTATE \($0)): \(message)" } ?? "PostgreSQL \(code): \(message)"
    }

    public var debugDescription: String {
        serverMessage.map { "\(description): \($0)" } ?? description
    }
}
