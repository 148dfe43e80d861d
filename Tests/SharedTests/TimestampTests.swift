import Basics
import Testing

@Suite("Timestamps")
struct TimestampTests {
    @Test(
        "RFC 3339 forms parse to the exact instant",
        arguments: [
            ("2023-02-08T08:29:58Z", "2023-02-08T08:29:58.000000Z"),
            ("2023-02-08t08:29:58z", "2023-02-08T08:29:58.000000Z"),
            ("2023-02-08 08:29:58Z", "2023-02-08T08:29:58.000000Z"),
            ("2023-02-08 08:29:58+05:30", "2023-02-08T02:59:58.000000Z"),
            ("2023-02-08T08:29:58.2Z", "2023-02-08T08:29:58.200000Z"),
            ("2023-02-08T08:29:58.224425Z", "2023-02-08T08:29:58.224425Z"),
            ("2023-02-08T08:29:58.2244259999Z", "2023-02-08T08:29:58.224425Z"),
            ("2023-02-08T08:29:58+05:45", "2023-02-08T02:44:58.000000Z"),
            ("2023-02-08T00:10:00-09:30", "2023-02-08T09:40:00.000000Z"),
            ("2023-02-08T00:00:00+14:00", "2023-02-07T10:00:00.000000Z"),
            ("2024-02-29T23:59:59.999999-00:00", "2024-02-29T23:59:59.999999Z"),
            ("2000-01-01T00:00:00Z", "2000-01-01T00:00:00.000000Z"),
        ])
    func parses(_ text: String, _ expected: String) throws {
        #expect(try Timestamp(rfc3339: text).rfc3339 == expected)
    }

    @Test(
        "malformed texts are refused with their problem",
        arguments: [
            ("2023-02-08T08:29:58", Timestamp.ParseProblem.missingOffset),
            ("2023-02-08T08:29:58.5", .missingOffset),
            ("2023-02-08", .malformed),
            ("2023-02-08_08:29:58Z", .malformed),
            ("2023-2-08T08:29:58Z", .malformed),
            ("2023-02-08T08:29Z", .malformed),
            ("2023-02-08T08:29:58+05", .malformed),
            ("2023-02-08T08:29:58Z ", .malformed),
            ("2023-02-29T08:29:58Z", .invalidField),
            ("2023-13-01T08:29:58Z", .invalidField),
            ("2023-02-08T08:60:58Z", .invalidField),
            ("2023-02-08T08:29:60Z", .invalidField),
            ("2023-02-08T08:29:58+24:00", .invalidField),
        ])
    func refuses(_ text: String, _ problem: Timestamp.ParseProblem) {
        #expect(throws: problem) { try Timestamp(rfc3339: text) }
    }

    @Test func printsTheLegacyFormatWithoutAZeroFraction() {
        #expect(
            Timestamp(year: 2023, month: 1, day: 20, hour: 3, minute: 23, second: 39, microsecond: 757_813).legacyText
                == "2023-01-20 03:23:39.757813")
        #expect(
            Timestamp(year: 2023, month: 1, day: 20, hour: 3, minute: 23, second: 39).legacyText
                == "2023-01-20 03:23:39")
        #expect(Timestamp(year: 2023, month: 1, day: 20, microsecond: 50).legacyText == "2023-01-20 00:00:00.000050")
    }

    @Test func calendarArithmeticIsExactAcrossCenturiesAndBeforeTheEpoch() {
        #expect(Timestamp(year: 1970, month: 1, day: 1).microsecondsSinceEpoch == 0)
        #expect(Timestamp(year: 2000, month: 3, day: 1).microsecondsSinceEpoch == 951_868_800_000_000)
        #expect(Timestamp(microsecondsSinceEpoch: -1).rfc3339 == "1969-12-31T23:59:59.999999Z")
        #expect(
            Timestamp(year: 2100, month: 2, day: 28).adding(seconds: 86_400).rfc3339 == "2100-03-01T00:00:00.000000Z")
    }

    @Test func httpDatesAreIMFFixdatesToTheSecond() {
        let instant = Timestamp(year: 2026, month: 12, day: 6, hour: 7, minute: 0, second: 40, microsecond: 999_999)
        #expect(instant.httpDate == "Sun, 06 Dec 2026 07:00:40 GMT")
        #expect(
            Timestamp(year: 1994, month: 11, day: 6, hour: 8, minute: 49, second: 37).httpDate
                == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(Timestamp(year: 2024, month: 2, day: 29).httpDate == "Thu, 29 Feb 2024 00:00:00 GMT")
        #expect(
            Timestamp(httpDate: "Sun, 06 Dec 2026 07:00:40 GMT")
                == Timestamp(year: 2026, month: 12, day: 6, hour: 7, second: 40))
        #expect(Timestamp(httpDate: "Sunday, 06-Dec-26 07:00:40 GMT") == nil)
        #expect(Timestamp(httpDate: "Sun, 31 Feb 2026 07:00:40 GMT") == nil)
        #expect(Timestamp(httpDate: "Sun, 06 Dec 2026 07:00:40 UTC") == nil)
    }
}
