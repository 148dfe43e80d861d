import CRabbitMQ

// Conversions between librabbitmq's structures and the Swift types of AMQPMessage.swift. C memory never leaves
// this folder: values read from C are copied out, and values lent to C live in a `CArena` for one call.

/// Memory for the C structures of one library call, freed all at once when the arena goes away.
final class CArena {
    let pool: UnsafeMutablePointer<amqp_pool_t>

    init() {
        pool = .allocate(capacity: 1)
        init_amqp_pool(pool, 4096)
    }

    deinit {
        empty_amqp_pool(pool)
        pool.deallocate()
    }

    /// Frees what the arena holds for reuse, keeping its first page.
    func recycle() {
        recycle_amqp_pool(pool)
    }

    func bytes(_ bytes: some Collection<UInt8>) -> amqp_bytes_t {
        guard !bytes.isEmpty else { return amqp_bytes_t(len: 0, bytes: nil) }
        var result = amqp_bytes_t()
        amqp_pool_alloc_bytes(pool, bytes.count, &result)
        let target = UnsafeMutableRawBufferPointer(start: result.bytes, count: bytes.count)
        target.copyBytes(from: bytes)
        return result
    }

    func bytes(_ text: String) -> amqp_bytes_t {
        bytes(text.utf8)
    }

    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.entries.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(amqp_table_entry_t.self, count: table.entries.count)
        for (index, entry) in table.entries.enumerated() {
            entries[index] = amqp_table_entry_t(key: bytes(entry.key), value: fieldValue(entry.value))
        }
        return amqp_table_t(num_entries: Int32(table.entries.count), entries: entries)
    }

    func fieldValue(_ value: AMQPFieldValue) -> amqp_field_value_t {
        var result = amqp_field_value_t()
        func kind(_ kind: amqp_field_value_kind_t) { result.kind = UInt8(kind.rawValue) }
        switch value {
        case .bool(let value):
            kind(AMQP_FIELD_KIND_BOOLEAN)
            result.value.boolean = value ? 1 : 0
        case .int8(let value):
            kind(AMQP_FIELD_KIND_I8)
            result.value.i8 = value
        case .uint8(let value):
            kind(AMQP_FIELD_KIND_U8)
            result.value.u8 = value
        case .int16(let value):
            kind(AMQP_FIELD_KIND_I16)
            result.value.i16 = value
        case .uint16(let value):
            kind(AMQP_FIELD_KIND_U16)
            result.value.u16 = value
        case .int32(let value):
            kind(AMQP_FIELD_KIND_I32)
            result.value.i32 = value
        case .uint32(let value):
            kind(AMQP_FIELD_KIND_U32)
            result.value.u32 = value
        case .int64(let value):
            kind(AMQP_FIELD_KIND_I64)
            result.value.i64 = value
        case .uint64(let value):
            kind(AMQP_FIELD_KIND_U64)
            result.value.u64 = value
        case .float(let value):
            kind(AMQP_FIELD_KIND_F32)
            result.value.f32 = value
        case .double(let value):
            kind(AMQP_FIELD_KIND_F64)
            result.value.f64 = value
        case .decimal(let scale, let value):
            kind(AMQP_FIELD_KIND_DECIMAL)
            result.value.decimal = amqp_decimal_t(decimals: scale, value: value)
        case .string(let text):
            kind(AMQP_FIELD_KIND_UTF8)
            result.value.bytes = bytes(text)
        case .bytes(let data):
            kind(AMQP_FIELD_KIND_BYTES)
            result.value.bytes = bytes(data)
        case .array(let values):
            kind(AMQP_FIELD_KIND_ARRAY)
            let entries = allocate(amqp_field_value_t.self, count: max(values.count, 1))
            for (index, value) in values.enumerated() {
                entries[index] = fieldValue(value)
            }
            result.value.array = amqp_array_t(num_entries: Int32(values.count), entries: entries)
        case .table(let table):
            kind(AMQP_FIELD_KIND_TABLE)
            result.value.table = self.table(table)
        case .timestamp(let seconds):
            kind(AMQP_FIELD_KIND_TIMESTAMP)
            result.value.u64 = seconds
        case .void:
            kind(AMQP_FIELD_KIND_VOID)
        }
        return result
    }

    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func text(_ value: String?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            result[keyPath: field] = bytes(value)
            flags |= UInt32(flag)
        }
        text(properties.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
        text(properties.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
        text(properties.correlationID, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
        text(properties.replyTo, AMQP_BASIC_REPLY_TO_FLAG, \.reply_to)
        text(properties.expiration, AMQP_BASIC_EXPIRATION_FLAG, \.expiration)
        text(properties.messageID, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
        text(properties.type, AMQP_BASIC_TYPE_FLAG, \.type)
        text(properties.userID, AMQP_BASIC_USER_ID_FLAG, \.user_id)
        text(properties.appID, AMQP_BASIC_APP_ID_FLAG, \.app_id)
        text(properties.clusterID, AMQP_BASIC_CLUSTER_ID_FLAG, \.cluster_id)
        if let headers = properties.headers {
            result.headers = table(headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        if let mode = properties.deliveryMode {
            result.delivery_mode = mode
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let priority = properties.priority {
            result.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        if let timestamp = properties.timestamp {
            result.timestamp = timestamp
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        result._flags = flags
        return result
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = amqp_pool_alloc(pool, MemoryLayout<T>.stride * count)!
        return raw.bindMemory(to: T.self, capacity: count)
    }
}

extension [UInt8] {
    /// A copy of the bytes that C owns.
    init(copying bytes: amqp_bytes_t) {
        guard let start = bytes.bytes, bytes.len > 0 else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: start, count: bytes.len))
    }
}

extension String {
    /// The bytes as text, with invalid UTF-8 repaired (names and property values are meant to be text).
    init(copying bytes: amqp_bytes_t) {
        guard let start = bytes.bytes, bytes.len > 0 else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: start, count: bytes.len), as: UTF8.self)
    }
}

extension AMQPTable {
    /// A copy of a table that librabbitmq decoded, refused beyond `AMQPTable.maxDepth` levels of nesting: the copy
    /// recurses, and a message's headers may nest as deep as a frame allows (about 18,000 levels).
    init(copying table: amqp_table_t, depth: Int = 1) throws(AMQPError) {
        guard depth <= Self.maxDepth else { throw AMQPTable.tooDeep }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(table.num_entries))
        for index in 0..<Int(table.num_entries) {
            let entry = table.entries[index]
            entries.append(
                Entry(key: String(copying: entry.key), value: try AMQPFieldValue(copying: entry.value, depth: depth)))
        }
        self.init(entries)
    }

    static let tooDeep = AMQPError(
        .unsupportedContent, "the headers nest deeper than \(AMQPTable.maxDepth) levels", isRetriable: false)
}

extension AMQPFieldValue {
    /// A copy of a value of a table at nesting level `depth`.
    init(copying value: amqp_field_value_t, depth: Int) throws(AMQPError) {
        switch amqp_field_value_kind_t(UInt32(value.kind)) {
        case AMQP_FIELD_KIND_BOOLEAN: self = .bool(value.value.boolean != 0)
        case AMQP_FIELD_KIND_I8: self = .int8(value.value.i8)
        case AMQP_FIELD_KIND_U8: self = .uint8(value.value.u8)
        case AMQP_FIELD_KIND_I16: self = .int16(value.value.i16)
        case AMQP_FIELD_KIND_U16: self = .uint16(value.value.u16)
        case AMQP_FIELD_KIND_I32: self = .int32(value.value.i32)
        case AMQP_FIELD_KIND_U32: self = .uint32(value.value.u32)
        case AMQP_FIELD_KIND_I64: self = .int64(value.value.i64)
        case AMQP_FIELD_KIND_U64: self = .uint64(value.value.u64)
        case AMQP_FIELD_KIND_F32: self = .float(value.value.f32)
        case AMQP_FIELD_KIND_F64: self = .double(value.value.f64)
        case AMQP_FIELD_KIND_DECIMAL:
            self = .decimal(scale: value.value.decimal.decimals, value: value.value.decimal.value)
        case AMQP_FIELD_KIND_UTF8: self = .string(String(copying: value.value.bytes))
        case AMQP_FIELD_KIND_BYTES: self = .bytes([UInt8](copying: value.value.bytes))
        case AMQP_FIELD_KIND_ARRAY:
            guard depth < AMQPTable.maxDepth else { throw AMQPTable.tooDeep }
            let array = value.value.array
            var values: [AMQPFieldValue] = []
            values.reserveCapacity(Int(array.num_entries))
            for index in 0..<Int(array.num_entries) {
                values.append(try AMQPFieldValue(copying: array.entries[index], depth: depth + 1))
            }
            self = .array(values)
        case AMQP_FIELD_KIND_TABLE: self = .table(try AMQPTable(copying: value.value.table, depth: depth + 1))
        case AMQP_FIELD_KIND_TIMESTAMP: self = .timestamp(value.value.u64)
        default: self = .void
        }
    }
}

extension AMQPProperties {
    /// Every field is set once, here, rather than after `init()`: mutating the struct field by field copied all
    /// of it each time, and properties are copied for every delivery.
    init(copying properties: amqp_basic_properties_t) throws(AMQPError) {
        let flags = properties._flags
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        func text(_ flag: Int32, _ bytes: amqp_bytes_t) -> String? { has(flag) ? String(copying: bytes) : nil }
        contentType = text(AMQP_BASIC_CONTENT_TYPE_FLAG, properties.content_type)
        contentEncoding = text(AMQP_BASIC_CONTENT_ENCODING_FLAG, properties.content_encoding)
        headers = has(AMQP_BASIC_HEADERS_FLAG) ? try AMQPTable(copying: properties.headers) : nil
        deliveryMode = has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? properties.delivery_mode : nil
        priority = has(AMQP_BASIC_PRIORITY_FLAG) ? properties.priority : nil
        correlationID = text(AMQP_BASIC_CORRELATION_ID_FLAG, properties.correlation_id)
        replyTo = text(AMQP_BASIC_REPLY_TO_FLAG, properties.reply_to)
        expiration = text(AMQP_BASIC_EXPIRATION_FLAG, properties.expiration)
        messageID = text(AMQP_BASIC_MESSAGE_ID_FLAG, properties.message_id)
        timestamp = has(AMQP_BASIC_TIMESTAMP_FLAG) ? properties.timestamp : nil
        type = text(AMQP_BASIC_TYPE_FLAG, properties.type)
        userID = text(AMQP_BASIC_USER_ID_FLAG, properties.user_id)
        appID = text(AMQP_BASIC_APP_ID_FLAG, properties.app_id)
        clusterID = text(AMQP_BASIC_CLUSTER_ID_FLAG, properties.cluster_id)
    }

    /// Decodes `basic` properties that librabbitmq decoded once already, when it read their frame (whose class
    /// `readContent` checked), and copies them; headers nested too deep to copy are refused.
    init(decoding encoded: [UInt8]) throws(AMQPError) {
        let arena = CArena()
        let decoded = arena.decodedProperties(encoded)
        try self.init(copying: decoded)
    }
}

extension CArena {
    /// `basic` properties as librabbitmq decodes them, their strings and tables in this arena. The bytes were
    /// decoded once already, when librabbitmq read their frame: decoding them again fails only when memory runs
    /// out, which no input or server can cause.
    func decodedProperties(_ encoded: [UInt8]) -> amqp_basic_properties_t {
        var decoded: UnsafeMutableRawPointer?
        let status = amqp_decode_properties(UInt16(AMQP_BASIC_CLASS), pool, bytes(encoded), &decoded)
        guard status == AMQP_STATUS_OK.rawValue, let decoded else {
            fatalError("librabbitmq could not decode properties it decoded before (status \(status))")
        }
        return decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee
    }

    /// The properties `encoded`, with the entries of `added` put before their headers (or instead of them, with
    /// `replacing`), without converting the headers they had (which may nest deeper than a copy allows).
    func forwardedProperties(_ encoded: [UInt8], adding added: AMQPTable, replacing: Bool) -> amqp_basic_properties_t {
        var properties = decodedProperties(encoded)
        let hasHeaders = properties._flags & UInt32(AMQP_BASIC_HEADERS_FLAG) != 0
        let old = hasHeaders && !replacing ? properties.headers : amqp_empty_table
        let addedTable = table(added)
        let count = Int(addedTable.num_entries) + Int(old.num_entries)
        guard count > 0 else { return properties }
        let entries = allocate(amqp_table_entry_t.self, count: count)
        for index in 0..<Int(addedTable.num_entries) { entries[index] = addedTable.entries[index] }
        for index in 0..<Int(old.num_entries) { entries[Int(addedTable.num_entries) + index] = old.entries[index] }
        properties.headers = amqp_table_t(num_entries: Int32(count), entries: entries)
        properties._flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        return properties
    }

    /// The bytes `table`'s entries take on the wire, without the table's own length.
    func encodedEntriesSize(_ table: AMQPTable) -> Int? {
        var converted = self.table(table)
        var buffer = [UInt8](repeating: 0, count: AMQPConnection.frameMax)
        var offset = 0
        let status = buffer.withUnsafeMutableBytes {
            amqp_encode_table(amqp_bytes_t(len: $0.count, bytes: $0.baseAddress), &converted, &offset)
        }
        return status == AMQP_STATUS_OK.rawValue ? offset - 4 : nil
    }
}
