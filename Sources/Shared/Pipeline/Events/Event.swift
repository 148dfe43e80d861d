import Basics
import Foundation

/// What happened: the `type` field of an event (docs/events.md).
public enum EventKind: String, Sendable, Hashable, CaseIterable {
    /// A member used a token at the door: one visit.
    case checkin
    /// A member joined; sets their `joined_at`, the earliest one standing.
    case userJoined = "user_joined"
}

extension EventKind {
    private static let namesUTF8 = allCases.map { ($0, Array($0.rawValue.utf8)) }

    /// The kind named by the UTF-8 bytes of a `type`, or nil for an unknown one.
    init?(utf8 name: UnsafeBufferPointer<UInt8>) {
        guard let (kind, _) = Self.namesUTF8.first(where: { name.matches($0.1) }) else { return nil }
        self = kind
    }
}

/// One valid event, as published to `coworking.events` and folded by the consumer.
public struct Event: Sendable, Hashable {
    /// The idempotency key: an event is counted once however often it is delivered.
    public var id: UUID
    public var kind: EventKind
    /// The legacy `users.id`, 1 to 2^31-1.
    public var userID: Int32
    /// When the check-in happened, or when the user joined.
    public var occurredAt: Timestamp
    /// The space of a check-in (`default` when the event names none); `nil` for `user_joined`.
    public var spaceID: String?

    /// The space of a check-in that names none.
    public static let defaultSpaceID = "default"

    public init(id: UUID, kind: EventKind, userID: Int32, occurredAt: Timestamp, spaceID: String? = nil) {
        self.id = id
        self.kind = kind
        self.userID = userID
        self.occurredAt = occurredAt
        self.spaceID = kind == .checkin ? (spaceID ?? Event.defaultSpaceID) : nil
    }

    /// The message body of docs/events.md: one JSON object, `occurred_at` in UTC to the microsecond.
    public var jsonBody: [UInt8] {
        var json = "{\"event_id\":\"\(id.uuidString.lowercased())\",\"type\":\"\(kind.rawValue)\","
        json += "\"user_id\":\(userID),\"occurred_at\":\"\(occurredAt.rfc3339)\""
        if let spaceID {
            // Space ids are limited to `A-Z a-z 0-9 . _ -`, so they need no escaping.
            json += ",\"space_id\":\"\(spaceID)\""
        }
        json += "}"
        return Array(json.utf8)
    }
}

extension Event {
    /// Whether `text` is 1 to 64 of `A-Z a-z 0-9 . _ -`.
    public static func isValidSpaceID(_ text: String) -> Bool {
        let bytes = text.utf8
        return (1...64).contains(bytes.count)
            && bytes.allSatisfy { byte in
                byte.isASCIIDigit || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
    }
}
