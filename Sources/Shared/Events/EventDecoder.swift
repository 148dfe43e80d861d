import Foundation

/// The limits an event must respect beyond its shape (CONTRACT §1, §2, §8).
public struct EventRules: Sendable, Equatable {
    /// The largest body accepted: 64 KiB.
    public var maxBodyBytes: Int
    /// `MAX_FUTURE_SKEW_S`: how far ahead of the consumer's clock `occurred_at` may be; default one day.
    public var maxFutureSkewSeconds: Int64
    /// The earliest `occurred_at` accepted: 2000-01-01T00:00:00Z.
    public var earliest: Timestamp

    public init(maxBodyBytes: Int = 65_536, maxFutureSkewSeconds: Int64 = 86_400) {
        self.maxBodyBytes = maxBodyBytes
        self.maxFutureSkewSeconds = maxFutureSkewSeconds
        self.earliest = Timestamp(year: 2000, month: 1, day: 1)
    }

    public static func fromEnvironment(_ environment: Environment) throws(ConfigurationError) -> EventRules {
        EventRules(
            maxFutureSkewSeconds: Int64(
                try environment.integer("MAX_FUTURE_SKEW_S", default: 86_400, in: 0...(10 * 365 * 86_400))))
    }
}

/// Turns message bodies into events, or into the exact reason they cannot be counted.
public struct EventDecoder: Sendable {
    public var rules: EventRules

    public init(rules: EventRules = EventRules()) {
        self.rules = rules
    }

    /// The largest `user_id`: the legacy `users.id` is an `int4`.
    public static let maxUserID = Int64(Int32.max)

    /// Decodes one message body. `now` is the consumer's clock, against which `MAX_FUTURE_SKEW_S` is measured.
    ///
    /// Fields are checked in the order `event_id`, `type`, `user_id`, `occurred_at`, `space_id`, and the first
    /// broken rule is the reason. Fields not listed in the contract are ignored.
    public func decode(_ body: [UInt8], now: Timestamp) throws(EventRejection) -> Event {
        guard body.count <= rules.maxBodyBytes else {
            throw EventRejection(.tooLarge, "body is \(body.count) bytes, more than the \(rules.maxBodyBytes) allowed")
        }
        let result = body.withUnsafeBufferPointer { buffer in
            Result { () throws(EventRejection) in try decode(buffer, now: now) }
        }
        return try result.get()
    }

    private func decode(_ body: UnsafeBufferPointer<UInt8>, now: Timestamp) throws(EventRejection) -> Event {
        guard String(validating: body, as: UTF8.self) != nil else {
            throw EventRejection(.notUTF8, "body is not valid UTF-8")
        }
        var fields = Fields()
        var scanner = JSONScanner(body)
        let top: JSONScalar
        do {
            top = try scanner.scanDocument { key, scanner throws(JSONSyntaxError) in
                guard let field = Field(rawValue: key) else { return }
                let value = try scanner.scalar()
                if fields[field] == nil {
                    fields[field] = value
                } else {
                    fields.duplicate = fields.duplicate ?? field
                }
            }
        } catch {
            throw EventRejection(.notJSON, "body is not JSON (syntax error at byte \(error.offset))")
        }
        guard top == .object else {
            throw EventRejection(.notObject, "body is \(top.kindDescription), not a JSON object")
        }
        if let duplicate = fields.duplicate {
            throw EventRejection(.invalidValue, "\(duplicate.rawValue) appears more than once")
        }

        let id = try fields.string(.eventID)
        guard let eventID = UUID(text: id) else {
            throw EventRejection(.invalidValue, "event_id must be a UUID, got \(quoted(id))")
        }
        let typeName = try fields.string(.type)
        guard let kind = EventKind(rawValue: typeName) else {
            throw EventRejection(.unknownType, "type \(quoted(typeName)) is unknown (expected checkin or user_joined)")
        }
        let userID = try fields.integer(.userID, in: 1...Self.maxUserID)
        let occurredAt = try timestamp(fields.string(.occurredAt), now: now)
        var spaceID: String?
        if kind == .checkin, let value = fields[.spaceID], value != .null {
            guard case .string(let space) = value else {
                throw EventRejection(.wrongType, "space_id must be a string, got \(value.kindDescription)")
            }
            guard isValidSpaceID(space) else {
                throw EventRejection(
                    .invalidValue, "space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got \(quoted(space))")
            }
            spaceID = space
        }
        return Event(id: eventID, kind: kind, userID: Int32(userID), occurredAt: occurredAt, spaceID: spaceID)
    }

    private func timestamp(_ text: String, now: Timestamp) throws(EventRejection) -> Timestamp {
        let instant: Timestamp
        do {
            instant = try Timestamp(rfc3339: text)
        } catch .missingOffset {
            throw EventRejection(.invalidValue, "occurred_at has no offset (add Z or ±HH:MM), got \(quoted(text))")
        } catch {
            throw EventRejection(.invalidValue, "occurred_at must be an RFC 3339 timestamp, got \(quoted(text))")
        }
        guard instant >= rules.earliest else {
            throw EventRejection(.tooOld, "occurred_at is before 2000-01-01T00:00:00Z")
        }
        guard instant <= now.adding(seconds: rules.maxFutureSkewSeconds) else {
            throw EventRejection(
                .tooFarInFuture,
                "occurred_at is more than \(rules.maxFutureSkewSeconds) s ahead of the consumer's clock")
        }
        return instant
    }
}

/// Whether `text` is 1 to 64 of `A-Z a-z 0-9 . _ -`.
public func isValidSpaceID(_ text: String) -> Bool {
    let bytes = text.utf8
    return (1...64).contains(bytes.count)
        && bytes.allSatisfy { byte in
            isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
}

private enum Field: String {
    case eventID = "event_id"
    case type
    case userID = "user_id"
    case occurredAt = "occurred_at"
    case spaceID = "space_id"

    var slot: Int {
        switch self {
        case .eventID: 0
        case .type: 1
        case .userID: 2
        case .occurredAt: 3
        case .spaceID: 4
        }
    }
}

/// The contract's fields as found in one body.
private struct Fields {
    /// One slot per field, by `Field.slot`: hashing the keys of a dictionary took a fifth of the consumer's time.
    private var values = InlineArray<5, JSONScalar?>(repeating: nil)
    var duplicate: Field?

    subscript(field: Field) -> JSONScalar? {
        get { values[field.slot] }
        set { values[field.slot] = newValue }
    }

    func string(_ field: Field) throws(EventRejection) -> String {
        guard let value = self[field] else { throw EventRejection(.missingField, "\(field.rawValue) is missing") }
        guard case .string(let text) = value else {
            throw EventRejection(.wrongType, "\(field.rawValue) must be a string, got \(value.kindDescription)")
        }
        return text
    }

    func integer(_ field: Field, in range: ClosedRange<Int64>) throws(EventRejection) -> Int64 {
        guard let value = self[field] else { throw EventRejection(.missingField, "\(field.rawValue) is missing") }
        guard case .number(let integer) = value else {
            throw EventRejection(.wrongType, "\(field.rawValue) must be an integer, got \(value.kindDescription)")
        }
        guard let integer, range.contains(integer) else {
            throw EventRejection(
                .invalidValue, "\(field.rawValue) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return integer
    }
}
