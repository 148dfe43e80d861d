import CRabbitMQ

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

    /// The deepest nesting of tables and arrays copied into Swift: deeper headers are refused, not recursed into.
    public static let maxDepth = 64

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
}

/// A message to publish.
public struct AMQPOutgoingMessage: Sendable, Hashable {
    public var exchange: String
    public var routingKey: String
    /// The message's properties; when it forwards a delivery, only the headers to add to the delivery's own.
    public var properties: AMQPProperties
    public var body: [UInt8]
    /// The properties of a forwarded delivery, as the broker encoded them: sent again as they are, headers nested
    /// at any depth included, without a copy into Swift.
    var forwardedProperties: [UInt8]?
    /// Whether `properties.headers` replace the forwarded properties' headers rather than come before them.
    var replacesHeaders = false

    public init(exchange: String, routingKey: String, properties: AMQPProperties, body: [UInt8]) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.body = body
    }

    /// `delivery` sent on with its properties and headers unchanged, `headers` put before its own, and `body`.
    /// Throws `unsupportedContent` when the properties with the added headers would not fit in a frame.
    public static func forwarding(
        _ delivery: AMQPDelivery, exchange: String, routingKey: String, adding headers: AMQPTable, body: [UInt8]
    ) throws(AMQPError) -> AMQPOutgoingMessage {
        let arena = CArena()
        let hadHeaders =
            arena.decodedProperties(delivery.encodedProperties)._flags & UInt32(AMQP_BASIC_HEADERS_FLAG) != 0
        guard let added = arena.encodedEntriesSize(headers),
            delivery.encodedProperties.count + added + (hadHeaders ? 0 : 4) <= AMQPConnection.maxPropertiesSize
        else {
            throw AMQPError(
                .unsupportedContent, "the message's properties with the added headers would not fit in a frame",
                isRetriable: false)
        }
        var message = AMQPOutgoingMessage(
            exchange: exchange, routingKey: routingKey, properties: AMQPProperties(headers: headers), body: body)
        message.forwardedProperties = delivery.encodedProperties
        return message
    }

    /// `delivery` sent on with its properties, but `headers` instead of its own: for headers that cannot be
    /// forwarded (`forwarding(_:exchange:routingKey:adding:body:)` threw).
    public static func forwarding(
        _ delivery: AMQPDelivery, exchange: String, routingKey: String, replacingHeadersWith headers: AMQPTable,
        body: [UInt8]
    ) -> AMQPOutgoingMessage {
        var message = AMQPOutgoingMessage(
            exchange: exchange, routingKey: routingKey, properties: AMQPProperties(headers: headers), body: body)
        message.forwardedProperties = delivery.encodedProperties
        message.replacesHeaders = true
        return message
    }
}

/// A message delivered to a consumer; acknowledge it by `deliveryTag`.
public struct AMQPDelivery: Sendable, Hashable {
    public var deliveryTag: UInt64
    /// Whether the broker delivered it before (to this or another consumer) without an acknowledgement.
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
    /// The properties as the broker encoded them, decoded when asked for (`properties()`): a consumer reads only
    /// the body of nearly every delivery, and copying each one's properties took a twentieth of its CPU.
    var encodedProperties: [UInt8]
    /// The body, or its first `bodyLimit` bytes when it was larger (see `bodySize`).
    public var body: [UInt8]
    /// The body's size as the broker declared it, which is more than `body.count` when the rest was read and
    /// discarded.
    public var bodySize: Int

    /// Made only from frames librabbitmq has read, so that `encodedProperties` are known to decode.
    init(
        deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, encodedProperties: [UInt8],
        body: [UInt8], bodySize: Int
    ) {
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.encodedProperties = encodedProperties
        self.body = body
        self.bodySize = bodySize
    }

    /// The properties, copied; throws `unsupportedContent` for headers nested deeper than `AMQPTable.maxDepth`.
    public func properties() throws(AMQPError) -> AMQPProperties {
        try AMQPProperties(decoding: encodedProperties)
    }

    /// The `timestamp` property (seconds since the Unix epoch), read from the encoded properties without decoding
    /// the rest, for a consumer that reads only this one of them.
    public var timestamp: UInt64? {
        var reader = PropertiesReader(encodedProperties)
        guard let flags = reader.uint16() else { return nil }
        func has(_ flag: Int32) -> Bool { flags & UInt16(flag) != 0 }
        // The fields before `timestamp`, in the order of the `basic` class.
        for (flag, size) in [
            (AMQP_BASIC_CONTENT_TYPE_FLAG, PropertiesReader.FieldSize.shortString),
            (AMQP_BASIC_CONTENT_ENCODING_FLAG, .shortString), (AMQP_BASIC_HEADERS_FLAG, .table),
            (AMQP_BASIC_DELIVERY_MODE_FLAG, .octet), (AMQP_BASIC_PRIORITY_FLAG, .octet),
            (AMQP_BASIC_CORRELATION_ID_FLAG, .shortString), (AMQP_BASIC_REPLY_TO_FLAG, .shortString),
            (AMQP_BASIC_EXPIRATION_FLAG, .shortString), (AMQP_BASIC_MESSAGE_ID_FLAG, .shortString),
        ] where has(flag) {
            guard reader.skip(size) else { return nil }
        }
        return has(AMQP_BASIC_TIMESTAMP_FLAG) ? reader.uint64() : nil
    }

    /// The value of the top-level header `key`, without copying the others (which may nest too deep to copy); nil
    /// when absent or itself nested too deep.
    public func header(_ key: String) -> AMQPFieldValue? {
        let arena = CArena()
        let properties = arena.decodedProperties(encodedProperties)
        guard properties._flags & UInt32(AMQP_BASIC_HEADERS_FLAG) != 0 else { return nil }
        let headers = properties.headers
        for index in 0..<Int(headers.num_entries) where String(copying: headers.entries[index].key) == key {
            return try? AMQPFieldValue(copying: headers.entries[index].value, depth: 1)
        }
        return nil
    }
}

/// Reads fields of encoded `basic` properties in order, big-endian as AMQP writes them.
struct PropertiesReader {
    enum FieldSize {
        case octet
        case shortString
        case table
    }

    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func integer(_ size: Int) -> UInt64? {
        guard offset + size <= bytes.count else { return nil }
        defer { offset += size }
        return bytes[offset..<offset + size].reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func uint16() -> UInt16? { integer(2).map { UInt16($0) } }

    mutating func uint64() -> UInt64? { integer(8) }

    /// Skips one field; false when the bytes end first.
    mutating func skip(_ size: FieldSize) -> Bool {
        let length: UInt64?
        switch size {
        case .octet: length = 1
        case .shortString: length = integer(1)
        case .table: length = integer(4)
        }
        guard let length, offset + Int(length) <= bytes.count else { return false }
        offset += Int(length)
        return true
    }
}
