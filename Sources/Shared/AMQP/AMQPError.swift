/// A failure of the AMQP layer.
///
/// `description` is safe to show anyone; the library's status text and the broker's reply go to
/// `debugDescription`, for logs.
public struct AMQPError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What kind of failure, as a small open set of codes rather than an enum that grows with every case.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        /// The TCP connection or the AMQP handshake failed.
        public static let connectionFailed = Code(description: "connection failed")
        /// The broker refused the credentials or the virtual host.
        public static let accessRefused = Code(description: "access refused")
        /// The connection is gone: closed by the broker, a socket error, or missed heartbeats.
        public static let connectionClosed = Code(description: "connection closed")
        /// The broker closed the channel after an error (a declaration that does not match, a missing queue).
        public static let channelClosed = Code(description: "channel closed")
        /// The broker did not answer a request in time.
        public static let timeout = Code(description: "timeout")
        /// The broker sent something this client did not expect.
        public static let unexpectedFrame = Code(description: "unexpected frame")
        /// A message's content cannot be converted or sent as it is: headers nested deeper than `AMQPTable.maxDepth`,
        /// properties that would not fit in a frame. The connection is unaffected.
        public static let unsupportedContent = Code(description: "unsupported content")
    }

    public var code: Code
    /// One sentence of what failed, without host details or server text.
    public var message: String
    /// The library's status text or the broker's reply, for `debugDescription` and logs only.
    public var detail: String?
    /// Whether reconnecting and trying again may succeed.
    public var isRetriable: Bool

    public init(_ code: Code, _ message: String, detail: String? = nil, isRetriable: Bool) {
        self.code = code
        self.message = message
        self.detail = detail
        self.isRetriable = isRetriable
    }

    public var description: String { "AMQP \(code): \(message)" }

    public var debugDescription: String {
        detail.map { "\(description) (\($0))" } ?? description
    }
}
