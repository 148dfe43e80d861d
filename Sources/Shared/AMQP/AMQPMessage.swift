/// A value in an AMQP field table (message headers, queue arguments), with its wire type kept, so that a
/// message forwarded to the dead-letter exchange carries its headers unchanged.
public indirect enum AMQPFieldValue: Sendable, Hashable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    case decimal(scale: UInt8, value: UInt32)
    /// A long string (`S`): RabbitMQ's type for header text.
    case string(String)
    /// A byte array (`x`).
    case bytes([UInt8])
    case array([AMQPFieldValue])
    case table(AMQPTable)
    /// Seconds since the Unix epoch.
    case timestamp(UInt64)
    case void
}

/// An ordered field table; keys keep the order they arrived in.
public struct AMQPTable: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: AMQPFieldValue

        public init(key: String, value: AMQPFieldValue) {
            self.key = key
            self.value = value
        }
    }

    public var entries: [Entry]

    public init(_ entries: [Entry] = []) {
        self.entries = entries
    }

    public init(dictionaryLiteral elements: (String, AMQPFieldValue)...) {
        entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    /// The value of the first entry named `key`; setting replaces it in place, or appends a new entry.
    public subscript(key: String) -> AMQPFieldValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            let index = entries.firstIndex { $0.key == key }
            switch (index, newValue) {
            case (let index?, let value?): entries[index].value = value
            case (let index?, nil): entries.remove(at: index)
            case (nil, let value?): entries.append(Entry(key: key, value: value))
            case (nil, nil): break
            }
        }
    }
}

/// The `basic` properties of a message; all optional, as on the wire.
public struct AMQPProperties: Sendable, Hashable {
    public var contentType: String?
    public var contentEncoding: String?
    public var headers: AMQPTable?
    /// 2 for persistent, 1 for transient.
    public var deliveryMode: UInt8?
    public var priority: UInt8?
    public var correlationID: String?
    public var replyTo: String?
    public var expiration: String?
    public var messageID: String?
    /// Seconds since the Unix epoch.
    public var timestamp: UInt64?
    public var type: String?
    public var userID: String?
    public var appID: String?
    public var clusterID: String?

    public init(
        contentType: String? = nil, headers: AMQPTable? = nil, deliveryMode: UInt8? = nil, messageID: String? = nil
    ) {
        self.contentType = contentType
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.messageID = messageID
    }

    /// The properties of an event (CONTRACT §1): JSON, persistent, the event id as message id.
    public static func event(messageID: String? = nil) -> AMQPProperties {
        AMQPProperties(contentType: "application/json", deliveryMode: 2, messageID: messageID)
    }
}

/// A message to publish.
public struct AMQPOutgoingMessage: Sendable, Hashable {
    public var exchange: String
    public var routingKey: String
    public var properties: AMQPProperties
    public var body: [UInt8]

    public init(exchange: String, routingKey: String, properties: AMQPProperties, body: [UInt8]) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.body = body
    }
}

/// A message delivered to a consumer; acknowledge it by `deliveryTag`.
public struct AMQPDelivery: Sendable, Hashable {
    public var deliveryTag: UInt64
    /// Whether the broker delivered it before (to this or another consumer) without an acknowledgement.
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
    /// The properties as the broker encoded them, decoded when asked for (`properties`): a consumer reads only
    /// the body of nearly every delivery, and copying each one's properties took a twentieth of its CPU.
    var encodedProperties: [UInt8]
    public var body: [UInt8]

    /// Made only from frames librabbitmq has read, so that `encodedProperties` are known to decode.
    init(
        deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, encodedProperties: [UInt8],
        body: [UInt8]
    ) {
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.encodedProperties = encodedProperties
        self.body = body
    }

    public var properties: AMQPProperties { AMQPProperties(decoding: encodedProperties) }
}

/// How the broker settled one published message.
public enum PublishOutcome: Sendable, Hashable {
    /// `basic.ack`: the broker has taken responsibility for it.
    case confirmed
    /// `basic.nack`: the broker could not take it (a full queue with `reject-publish`, an internal error).
    case nacked
    /// `basic.return`: no queue was bound for its routing key.
    case returned
    /// No answer before the connection failed or the wait ran out: it may or may not have arrived.
    case unconfirmed
}
