import Basics
import Foundation

/// The limits an event must respect beyond its shape (docs/events.md).
public struct EventRules: Sendable, Equatable {
    /// The largest body accepted: 64 KiB.
    public var maxBodyBytes: Int
    /// `MAX_FUTURE_SKEW_S`: how far ahead of the consumer's clock `occurred_at` may be; default one day.
    public var maxFutureSkewSeconds: Int64
    /// `DEDUP_HORIZON_DAYS`: how long ago an event may have occurred, when set (unset by default: any time since
    /// 2000). The ids of older events are let go, so such an event could no longer be counted exactly once.
    public var dedupHorizonDays: Int?
    /// The earliest `occurred_at` accepted: 2000-01-01T00:00:00Z.
    public var earliest: Timestamp

    public init(maxBodyBytes: Int = 65_536, maxFutureSkewSeconds: Int64 = 86_400, dedupHorizonDays: Int? = nil) {
        self.maxBodyBytes = maxBodyBytes
        self.maxFutureSkewSeconds = maxFutureSkewSeconds
        self.dedupHorizonDays = dedupHorizonDays
        self.earliest = Timestamp(year: 2000, month: 1, day: 1)
    }

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError) -> EventRules {
        EventRules(
            maxFutureSkewSeconds: Int64(
                try environment.integer("MAX_FUTURE_SKEW_S", default: 86_400, in: 0...(10 * 365 * 86_400))),
            dedupHorizonDays: try environment["DEDUP_HORIZON_DAYS"].map { _ throws(ConfigurationError) in
                try environment.integer("DEDUP_HORIZON_DAYS", default: 0, in: 1...36_500)
            })
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
    ///
    /// `bodySize` is the body's size when `body` holds only its first bytes (a message too large to keep whole).
    public func decode(_ body: [UInt8], bodySize: Int? = nil, now: Timestamp) throws(EventRejection) -> Event {
        let size = bodySize ?? body.count
        guard size <= rules.maxBodyBytes else {
            throw EventRejection(
                .tooLarge,
                "body is \(size) bytes, more than the \(rules.maxBodyBytes) allowed"
                    + (size > body.count ? " (the dead letter keeps its first \(body.count))" : ""))
        }
        let result = body.withUnsafeBufferPointer { buffer in
            Result { () throws(EventRejection) in try decode(buffer, now: now) }
        }
        return try result.get()
    }

    private func decode(_ body: UnsafeBufferPointer<UInt8>, now: Timestamp) throws(EventRejection) -> Event {
        // Bodies are nearly always ASCII, which needs no String built to know it is valid.
        guard body.allSatisfy({ $0 < 0x80 }) || String(validating: body, as: UTF8.self) != nil else {
            throw EventRejection(.notUTF8, "body is not valid UTF-8")
        }
        var fields = Fields()
        var scanner = JSONScanner(body)
        let top: JSONScalar
        do {
            top = try scanner.scanDocument { key, scanner throws(JSONSyntaxError) in
                guard let field = scanner.withUTF8(of: key, Field.init(utf8:)) else { return }
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
            throw EventRejection(.invalidValue, "\(duplicate.name) appears more than once")
        }

        // The strings are read from the body's bytes: a String is built only for the space and for a reason.
        let id = try fields.string(.eventID)
        guard let eventID = scanner.withUTF8(of: id, UUID.init(utf8:)) else {
            throw EventRejection(.invalidValue, "event_id must be a UUID, got \(scanner.text(of: id).quoted())")
        }
        let typeName = try fields.string(.type)
        guard let kind = scanner.withUTF8(of: typeName, EventKind.init(utf8:)) else {
            throw EventRejection(
                .unknownType,
                "type \(scanner.text(of: typeName).quoted()) is unknown (expected checkin or user_joined)")
        }
        let userID = try fields.integer(.userID, in: 1...Self.maxUserID)
        let occurredAt = try timestamp(fields.string(.occurredAt), in: scanner, now: now)
        var spaceID: String?
        if kind == .checkin, let value = fields[.spaceID], value != .null {
            guard case .string(let string) = value else {
                throw EventRejection(.wrongType, "space_id must be a string, got \(value.kindDescription)")
            }
            let space = scanner.text(of: string)
            guard Event.isValidSpaceID(space) else {
                throw EventRejection(
                    .invalidValue, "space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got \(space.quoted())")
            }
            spaceID = space
        }
        return Event(id: eventID, kind: kind, userID: Int32(userID), occurredAt: occurredAt, spaceID: spaceID)
    }

    private func timestamp(_ string: JSONString, in scanner: JSONScanner, now: Timestamp) throws(EventRejection)
        -> Timestamp
    {
        let parsed = scanner.withUTF8(of: string) { bytes in
            Result { () throws(Timestamp.ParseProblem) in try Timestamp(rfc3339: bytes) }
        }
        let instant: Timestamp
        do {
            instant = try parsed.get()
        } catch .missingOffset {
            throw EventRejection(
                .invalidValue,
                "occurred_at has no offset (add Z or ±HH:MM), got \(scanner.text(of: string).quoted())")
        } catch {
            throw EventRejection(
                .invalidValue, "occurred_at must be an RFC 3339 timestamp, got \(scanner.text(of: string).quoted())")
        }
        guard instant >= rules.earliest else {
            throw EventRejection(.tooOld, "occurred_at is before 2000-01-01T00:00:00Z")
        }
        if let days = rules.dedupHorizonDays, instant < now.adding(seconds: -Int64(days) * 86_400) {
            throw EventRejection(
                .beyondDedupHorizon,
                "occurred_at is more than \(days) days ago (DEDUP_HORIZON_DAYS), so its id may no longer be kept and it "
                    + "could not be counted exactly once: raise DEDUP_HORIZON_DAYS to count it")
        }
        guard instant <= now.adding(seconds: rules.maxFutureSkewSeconds) else {
            throw EventRejection(
                .tooFarInFuture,
                "occurred_at is more than \(rules.maxFutureSkewSeconds) s ahead of the consumer's clock")
        }
        return instant
    }
}

/// The contract's fields, by slot in `Fields`.
private enum Field: Int, CaseIterable {
    case eventID
    case type
    case userID
    case occurredAt
    case spaceID

    var name: String {
        switch self {
        case .eventID: "event_id"
        case .type: "type"
        case .userID: "user_id"
        case .occurredAt: "occurred_at"
        case .spaceID: "space_id"
        }
    }

    private static let namesUTF8 = allCases.map { Array($0.name.utf8) }

    /// The field named by the UTF-8 bytes of a key, or nil for a field not in the contract.
    init?(utf8 key: UnsafeBufferPointer<UInt8>) {
        guard let slot = Self.namesUTF8.firstIndex(where: key.matches) else { return nil }
        self.init(rawValue: slot)
    }
}

/// The contract's fields as found in one body.
private struct Fields {
    /// One slot per field: hashing the keys of a dictionary took a fifth of the consumer's time.
    private var values = InlineArray<5, JSONScalar?>(repeating: nil)
    var duplicate: Field?

    subscript(field: Field) -> JSONScalar? {
        get { values[field.rawValue] }
        set { values[field.rawValue] = newValue }
    }

    func string(_ field: Field) throws(EventRejection) -> JSONString {
        guard let value = self[field] else { throw EventRejection(.missingField, "\(field.name) is missing") }
        guard case .string(let string) = value else {
            throw EventRejection(.wrongType, "\(field.name) must be a string, got \(value.kindDescription)")
        }
        return string
    }

    func integer(_ field: Field, in range: ClosedRange<Int64>) throws(EventRejection) -> Int64 {
        guard let value = self[field] else { throw EventRejection(.missingField, "\(field.name) is missing") }
        guard case .number(let integer) = value else {
            throw EventRejection(.wrongType, "\(field.name) must be an integer, got \(value.kindDescription)")
        }
        guard let integer, range.contains(integer) else {
            throw EventRejection(
                .invalidValue, "\(field.name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return integer
    }
}
