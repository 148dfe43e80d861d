import Basics
import Foundation
import Pipeline
import Testing

@Suite("Event validation")
struct EventDecoderTests {
    let decoder = EventDecoder()
    /// The consumer's clock in these tests.
    let now = Timestamp(year: 2024, month: 6, day: 1, hour: 12)

    func decode(_ body: String) throws(EventRejection) -> Event {
        try decoder.decode(Array(body.utf8), now: now)
    }

    func rejection(_ body: [UInt8]) -> EventRejection? {
        do {
            _ = try decoder.decode(body, now: now)
            return nil
        } catch {
            return error
        }
    }

    @Test func decodesTheContractExamples() throws {
        let checkin = try decode(
            #"{"event_id":"6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11","type":"checkin","user_id":173,"#
                + #""occurred_at":"2023-02-08T08:29:58.224425Z","space_id":"berlin-mitte"}"#)
        #expect(checkin.id == UUID(uuidString: "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11"))
        #expect(checkin.kind == .checkin)
        #expect(checkin.userID == 173)
        #expect(checkin.occurredAt.rfc3339 == "2023-02-08T08:29:58.224425Z")
        #expect(checkin.spaceID == "berlin-mitte")

        let joined = try decode(
            #"{"event_id":"0b6a7c1e-1d2f-4f55-8a9e-3c4d5e6f7a8b","type":"user_joined","user_id":173,"#
                + #""occurred_at":"2023-01-20T03:23:39.757813Z"}"#)
        #expect(joined.kind == .userJoined)
        #expect(joined.spaceID == nil)
        #expect(
            joined.occurredAt
                == Timestamp(year: 2023, month: 1, day: 20, hour: 3, minute: 23, second: 39, microsecond: 757_813))
    }

    @Test func aCheckinWithoutSpaceIsInTheDefaultSpace() throws {
        let event = try decode(
            #"{"event_id":"6F1C1F0E-5A53-4C8E-9D7E-2F4C1B9A0D11","type":"checkin","user_id":1,"occurred_at":"2023-02-08T08:29:58Z","space_id":null}"#
        )
        #expect(event.spaceID == "default")
        #expect(event.id == UUID(uuidString: "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11"), "ids compare as values, any case")
    }

    @Test func ignoresUnlistedFieldsOfAnyShape() throws {
        let event = try decode(
            #"{"extra":{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00"},"event_id":"6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11","#
                + #""type":"checkin","user_id":2147483647,"occurred_at":"2023-02-08T08:29:58+05:45","n":-1.5e3,"t":true}"#
        )
        #expect(event.userID == Int32.max)
        #expect(event.occurredAt.rfc3339 == "2023-02-08T02:44:58.000000Z")
    }

    @Test(
        "occurred_at may separate date and time by a space and write T and Z in lower case (RFC 3339 section 5.6)",
        arguments: [
            ("2023-02-08 08:29:58Z", "2023-02-08T08:29:58.000000Z"),
            ("2023-02-08t08:29:58z", "2023-02-08T08:29:58.000000Z"),
            ("2023-02-08 08:29:58+05:30", "2023-02-08T02:59:58.000000Z"),
        ])
    func acceptsTheSeparatorsOfSection5_6(_ occurredAt: String, _ expected: String) throws {
        let event = try decode(Self.checkin(replacing: "occurred_at", with: "\"\(occurredAt)\""))
        #expect(event.occurredAt.rfc3339 == expected)
    }

    @Test func readsKeysAndValuesWrittenWithEscapes() throws {
        let event = try decode(
            #"{"event\u005fid":"6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d1\u0031","\u0074ype":"check\u0069n","user_id":9,"#
                + #""occurred_at":"2023-02-08T08:29:58\u005A","space_id":"h\u0071"}"#)
        #expect(
            event
                == Event(
                    id: UUID(uuidString: "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11")!, kind: .checkin, userID: 9,
                    occurredAt: Timestamp(year: 2023, month: 2, day: 8, hour: 8, minute: 29, second: 58),
                    spaceID: "hq"))
    }

    @Test func aUserJoinedIgnoresItsSpace() throws {
        let event = try decode(
            #"{"event_id":"6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11","type":"user_joined","user_id":5,"occurred_at":"2023-02-08T08:29:58Z","space_id":"!!"}"#
        )
        #expect(event.spaceID == nil)
    }

    @Test func theJSONBodyOfAnEventDecodesToTheSameEvent() throws {
        let event = Event(
            id: UUID(), kind: .checkin, userID: 42,
            occurredAt: Timestamp(year: 2023, month: 3, day: 26, hour: 1, minute: 15, microsecond: 7),
            spaceID: "a.b_c-1")
        #expect(try decoder.decode(event.jsonBody, now: now) == event)
    }

    static let validID = "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11"

    /// A check-in body with `field` replaced by `value` (raw JSON), or removed when `value` is nil.
    static func checkin(replacing field: String, with value: String?) -> String {
        var fields: [(String, String)] = [
            ("event_id", "\"\(validID)\""), ("type", "\"checkin\""), ("user_id", "7"),
            ("occurred_at", "\"2023-02-08T08:29:58Z\""), ("space_id", "\"hq\""),
        ]
        if let value {
            fields = fields.map { $0.0 == field ? ($0.0, value) : $0 }
        } else {
            fields.removeAll { $0.0 == field }
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    static let badBodies: [(String, EventRejection.Kind, String)] = [
        ("", .notJSON, "body is not JSON (syntax error at byte 0)"),
        ("{", .notJSON, "body is not JSON (syntax error at byte 1)"),
        (#"{"a":1,}"#, .notJSON, "body is not JSON (syntax error at byte 7)"),
        (#"{"a":[1,]}"#, .notJSON, "body is not JSON (syntax error at byte 8)"),
        (#"{"a":01}"#, .notJSON, "body is not JSON (syntax error at byte 6)"),
        (#"{"a":"\x"}"#, .notJSON, "body is not JSON (syntax error at byte 7)"),
        ("{\"a\":\"tab\there\"}", .notJSON, "body is not JSON (syntax error at byte 9)"),
        (#"{"a":1} {"b":2}"#, .notJSON, "body is not JSON (syntax error at byte 8)"),
        (#"{"a":[}"#, .notJSON, "body is not JSON (syntax error at byte 6)"),
        ("[1,2]", .notObject, "body is an array, not a JSON object"),
        ("\"checkin\"", .notObject, "body is a string, not a JSON object"),
        ("42", .notObject, "body is a number, not a JSON object"),
        ("null", .notObject, "body is null, not a JSON object"),
        (checkin(replacing: "event_id", with: nil), .missingField, "event_id is missing"),
        (checkin(replacing: "type", with: nil), .missingField, "type is missing"),
        (checkin(replacing: "user_id", with: nil), .missingField, "user_id is missing"),
        (checkin(replacing: "occurred_at", with: nil), .missingField, "occurred_at is missing"),
        (checkin(replacing: "event_id", with: "42"), .wrongType, "event_id must be a string, got a number"),
        (
            checkin(replacing: "event_id", with: "\"not-a-uuid\""), .invalidValue,
            #"event_id must be a UUID, got "not-a-uuid""#
        ),
        (
            checkin(replacing: "event_id", with: "\"{6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11}\""), .invalidValue,
            #"event_id must be a UUID, got "{6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11}""#
        ),
        (checkin(replacing: "type", with: "null"), .wrongType, "type must be a string, got null"),
        (
            checkin(replacing: "type", with: "\"checkout\""), .unknownType,
            #"type "checkout" is unknown (expected checkin or user_joined)"#
        ),
        (
            checkin(replacing: "type", with: #""check\u006fut""#), .unknownType,
            #"type "checkout" is unknown (expected checkin or user_joined)"#
        ),
        (
            checkin(replacing: "type", with: "\"CHECKIN\""), .unknownType,
            #"type "CHECKIN" is unknown (expected checkin or user_joined)"#
        ),
        (checkin(replacing: "user_id", with: "\"7\""), .wrongType, "user_id must be an integer, got a string"),
        (checkin(replacing: "user_id", with: "true"), .wrongType, "user_id must be an integer, got a boolean"),
        (checkin(replacing: "user_id", with: "7.5"), .invalidValue, "user_id must be an integer from 1 to 2147483647"),
        (checkin(replacing: "user_id", with: "7e0"), .invalidValue, "user_id must be an integer from 1 to 2147483647"),
        (checkin(replacing: "user_id", with: "0"), .invalidValue, "user_id must be an integer from 1 to 2147483647"),
        (checkin(replacing: "user_id", with: "-3"), .invalidValue, "user_id must be an integer from 1 to 2147483647"),
        (
            checkin(replacing: "user_id", with: "2147483648"), .invalidValue,
            "user_id must be an integer from 1 to 2147483647"
        ),
        (
            checkin(replacing: "user_id", with: "99999999999999999999999"), .invalidValue,
            "user_id must be an integer from 1 to 2147483647"
        ),
        (
            checkin(replacing: "occurred_at", with: "1675844998"), .wrongType,
            "occurred_at must be a string, got a number"
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-08T08:29:58\""), .invalidValue,
            #"occurred_at has no offset (add Z or ±HH:MM), got "2023-02-08T08:29:58""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-08  08:29:58Z\""), .invalidValue,
            #"occurred_at must be an RFC 3339 timestamp, got "2023-02-08  08:29:58Z""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-30T08:29:58Z\""), .invalidValue,
            #"occurred_at must be an RFC 3339 timestamp, got "2023-02-30T08:29:58Z""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-08T24:00:00Z\""), .invalidValue,
            #"occurred_at must be an RFC 3339 timestamp, got "2023-02-08T24:00:00Z""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-08T08:29:58.Z\""), .invalidValue,
            #"occurred_at must be an RFC 3339 timestamp, got "2023-02-08T08:29:58.Z""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2023-02-08T08:29:58+0530\""), .invalidValue,
            #"occurred_at must be an RFC 3339 timestamp, got "2023-02-08T08:29:58+0530""#
        ),
        (
            checkin(replacing: "occurred_at", with: "\"1999-12-31T23:59:59.999999Z\""), .tooOld,
            "occurred_at is before 2000-01-01T00:00:00Z"
        ),
        (
            checkin(replacing: "occurred_at", with: "\"2024-06-02T12:00:00.000001Z\""), .tooFarInFuture,
            "occurred_at is more than 86400 s ahead of the consumer's clock"
        ),
        (checkin(replacing: "space_id", with: "7"), .wrongType, "space_id must be a string, got a number"),
        (
            checkin(replacing: "space_id", with: "\"\""), .invalidValue,
            #"space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got """#
        ),
        (
            checkin(replacing: "space_id", with: "\"berlin mitte\""), .invalidValue,
            #"space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got "berlin mitte""#
        ),
        (
            checkin(replacing: "space_id", with: "\"\(String(repeating: "a", count: 65))\""), .invalidValue,
            "space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got \"\(String(repeating: "a", count: 64))…\""
        ),
        (
            checkin(replacing: "space_id", with: #""a\nb\u001b[31mc\u0085d\u2028e\te""#), .invalidValue,
            #"space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got "a\nb\u{1B}[31mc\u{85}d\u{2028}e\te""#
        ),
        (
            checkin(replacing: "space_id", with: "\"café\""), .invalidValue,
            #"space_id must be 1 to 64 of A-Z a-z 0-9 . _ -, got "café""#
        ),
        (
            #"{"event_id":"\#(validID)","event_id":"\#(validID)","type":"checkin","user_id":1,"occurred_at":"2023-02-08T08:29:58Z"}"#,
            .invalidValue, "event_id appears more than once"
        ),
    ]

    @Test("a bad body is rejected with its exact reason", arguments: badBodies)
    func rejects(_ body: String, kind: EventRejection.Kind, reason: String) {
        let rejection = rejection(Array(body.utf8))
        #expect(rejection?.kind == kind)
        #expect(rejection?.description == reason)
    }

    @Test func rejectsBytesThatAreNotUTF8() {
        var body = Array(Self.checkin(replacing: "space_id", with: "\"hq\"").utf8)
        body[body.count - 3] = 0xFF
        #expect(rejection(body) == EventRejection(.notUTF8, "body is not valid UTF-8"))
    }

    @Test func rejectsABodyOver64KiBButAcceptsOneOfExactly64KiB() throws {
        let base = Self.checkin(replacing: "space_id", with: "\"hq\"")
        let padding = 65_536 - base.utf8.count - #","p":"""#.utf8.count
        let exact = String(base.dropLast()) + #","p":""# + String(repeating: "x", count: padding) + "\"}"
        #expect(exact.utf8.count == 65_536)
        #expect(try decode(exact).userID == 7)
        let over = Array((exact + " ").utf8)
        #expect(rejection(over) == EventRejection(.tooLarge, "body is 65537 bytes, more than the 65536 allowed"))
    }

    @Test func deeplyNestedIgnoredFieldsNeitherCrashNorPass() {
        let deep = String(repeating: "[", count: 30_000)
        let body = #"{"x":"# + deep + String(repeating: "]", count: 30_000) + "}"
        #expect(rejection(Array(body.utf8))?.kind == .missingField)
        let unbalanced = #"{"x":"# + deep + "}"
        #expect(rejection(Array(unbalanced.utf8))?.kind == .notJSON)
    }

    @Test func theFutureLimitIsConfigurable() throws {
        let strict = EventDecoder(rules: EventRules(maxFutureSkewSeconds: 60))
        let body = Array(Self.checkin(replacing: "occurred_at", with: "\"2024-06-01T12:01:00Z\"").utf8)
        #expect(try strict.decode(body, now: now).userID == 7)
        let later = Array(Self.checkin(replacing: "occurred_at", with: "\"2024-06-01T12:01:00.000001Z\"").utf8)
        #expect(throws: EventRejection(.tooFarInFuture, "occurred_at is more than 60 s ahead of the consumer's clock"))
        {
            try strict.decode(later, now: now)
        }
    }

    /// With `DEDUP_HORIZON_DAYS`, an event older than the horizon by the consumer's clock is refused, naming the
    /// setting; one inside it is counted as before.
    @Test func anEventPastTheDedupHorizonIsRefusedNamingTheSetting() throws {
        let decoder = EventDecoder(rules: EventRules(dedupHorizonDays: 30))
        func body(_ at: String) -> [UInt8] {
            Array(#"{"event_id":"\#(UUID())","type":"checkin","user_id":7,"occurred_at":"\#(at)"}"#.utf8)
        }
        #expect(try decoder.decode(body("2024-05-02T12:00:01Z"), now: now).userID == 7)
        #expect(
            throws: EventRejection(
                .beyondDedupHorizon,
                "occurred_at is more than 30 days ago (DEDUP_HORIZON_DAYS), so its id may no longer be kept and it could "
                    + "not be counted exactly once: raise DEDUP_HORIZON_DAYS to count it")
        ) { try decoder.decode(body("2024-05-02T11:59:59Z"), now: now) }
        #expect(try EventDecoder().decode(body("2001-05-02T11:59:59Z"), now: now).userID == 7, "unset: any age")
        #expect(
            try EventRules.fromEnvironment(EnvironmentVariables(["DEDUP_HORIZON_DAYS": "400"])).dedupHorizonDays == 400)
        #expect(throws: ConfigurationError.self) {
            try EventRules.fromEnvironment(EnvironmentVariables(["DEDUP_HORIZON_DAYS": "0"]))
        }
    }
}
