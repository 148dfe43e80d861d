import Foundation

/// An instant in UTC, exact to the microsecond (PostgreSQL's `timestamptz` resolution).
///
/// Held as an integer so that parsing, bucketing and printing never round through floating point.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// The instant of a UTC calendar date and time.
    public init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, microsecond: Int = 0)
    {
        let days = Int64(daysFromCivil(year: year, month: month, day: day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        self.init(microsecondsSinceEpoch: seconds * 1_000_000 + Int64(microsecond))
    }

    /// The current time, truncated to the microsecond.
    public static var now: Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(microsecondsSinceEpoch: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }

    /// This instant plus `seconds`.
    public func adding(seconds: Int64) -> Timestamp {
        Timestamp(microsecondsSinceEpoch: microsecondsSinceEpoch + seconds * 1_000_000)
    }

    /// The UTC calendar fields of this instant.
    public var utcFields: (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int) {
        let (seconds, microsecond) = microsecondsSinceEpoch.floorDivided(by: 1_000_000)
        let (days, secondOfDay) = seconds.floorDivided(by: 86_400)
        let (year, month, day) = civilFromDays(Int(days))
        let second = Int(secondOfDay)
        return (year, month, day, second / 3600, second / 60 % 60, second % 60, Int(microsecond))
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    public var rfc3339: String {
        let f = utcFields
        return "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2))T\(pad(f.hour, 2)):\(pad(f.minute, 2)):"
            + "\(pad(f.second, 2)).\(pad(f.microsecond, 6))Z"
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff` with the fraction left out when it is zero: how the legacy Flask service
    /// printed a naive UTC `timestamp`, kept for `user_visits`.
    public var legacyText: String {
        let f = utcFields
        let base =
            "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2)) \(pad(f.hour, 2)):\(pad(f.minute, 2)):"
            + pad(f.second, 2)
        return f.microsecond == 0 ? base : base + "." + pad(f.microsecond, 6)
    }

    public var description: String { rfc3339 }
}

extension Timestamp {
    /// Why a text is not an RFC 3339 timestamp.
    public enum ParseProblem: Error, Sendable, Equatable {
        /// Not of the form `YYYY-MM-DDTHH:MM:SS[.f]±HH:MM` at all.
        case malformed
        /// A date and time without `Z` or an offset, which would be read in an unknown zone.
        case missingOffset
        /// Of the right form, but a field is out of range (month 13, February 30, hour 24).
        case invalidField
    }

    /// Parses RFC 3339 (`2023-02-08T08:29:58.224425Z`, `2023-02-08T10:29:58+02:00`): `T`, `t` or a space between
    /// date and time (section 5.6 lets applications choose the space), `Z`, `z` or `±HH:MM` after it, any number
    /// of fraction digits, of which six are kept (truncated).
    public init(rfc3339 text: String) throws(ParseProblem) {
        var text = text
        let result = text.withUTF8 { bytes in Result { () throws(ParseProblem) in try Timestamp(rfc3339: bytes) } }
        self = try result.get()
    }

    /// Parses the UTF-8 bytes of an RFC 3339 timestamp, as `init(rfc3339:)` does a string.
    public init(rfc3339 bytes: UnsafeBufferPointer<UInt8>) throws(ParseProblem) {
        var parser = RFC3339Parser(bytes: bytes)
        self = try parser.parse()
    }
}

/// A one-pass parser over the bytes of a timestamp.
private struct RFC3339Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func take() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    private mutating func digits(_ count: Int) throws(Timestamp.ParseProblem) -> Int {
        var value = 0
        for _ in 0..<count {
            guard let byte = take(), byte.isASCIIDigit else { throw .malformed }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// Takes the next byte, which must be the ASCII `first` or `second`. `Character` parameters had cost a
    /// String's Unicode handling on every timestamp read.
    private mutating func expect(_ accepted: Unicode.Scalar...) throws(Timestamp.ParseProblem) {
        guard let byte = take(), accepted.contains(where: { byte == UInt8(ascii: $0) }) else { throw .malformed }
    }

    mutating func parse() throws(Timestamp.ParseProblem) -> Timestamp {
        let year = try digits(4)
        try expect("-")
        let month = try digits(2)
        try expect("-")
        let day = try digits(2)
        try expect("T", "t", " ")
        let hour = try digits(2)
        try expect(":")
        let minute = try digits(2)
        try expect(":")
        let second = try digits(2)
        var microsecond = 0
        if peek() == UInt8(ascii: ".") {
            index += 1
            var count = 0
            while let byte = peek(), byte.isASCIIDigit {
                index += 1
                if count < 6 { microsecond = microsecond * 10 + Int(byte - UInt8(ascii: "0")) }
                count += 1
            }
            guard count > 0 else { throw .malformed }
            for _ in count..<max(count, 6) { microsecond *= 10 }
        }
        var offsetSeconds = 0
        switch take() {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            break
        case let sign? where sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-"):
            let offsetHour = try digits(2)
            try expect(":")
            let offsetMinute = try digits(2)
            guard offsetHour <= 23, offsetMinute <= 59 else { throw .invalidField }
            offsetSeconds = (offsetHour * 3600 + offsetMinute * 60) * (sign == UInt8(ascii: "+") ? 1 : -1)
        case nil:
            throw .missingOffset
        default:
            throw .malformed
        }
        guard index == bytes.count else { throw .malformed }
        guard (1...12).contains(month), (1...daysInMonth(year: year, month: month)).contains(day), hour <= 23,
            minute <= 59, second <= 59
        else { throw .invalidField }
        let local = Timestamp(
            year: year, month: month, day: day, hour: hour, minute: minute, second: second, microsecond: microsecond)
        return local.adding(seconds: Int64(-offsetSeconds))
    }
}

extension UInt8 {
    /// Whether the byte is an ASCII digit, `0` to `9`.
    @inlinable
    public var isASCIIDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}

func daysInMonth(year: Int, month: Int) -> Int {
    switch month {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

/// `value` in decimal, zero-padded on the left to `width` digits.
func pad(_ value: Int, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

extension Int64 {
    /// Quotient and remainder rounded toward negative infinity, so instants before 1970 split correctly.
    public func floorDivided(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (q, r) = quotientAndRemainder(dividingBy: divisor)
        return r < 0 ? (q - 1, r + divisor) : (q, r)
    }
}
