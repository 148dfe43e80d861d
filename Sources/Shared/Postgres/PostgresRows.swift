import Basics
import Foundation

/// How a statement parameter travels to the server.
public enum PostgresParameter: Sendable {
    /// Text the server parses for the parameter's type.
    case text(String)
    /// The server's binary form of the parameter's type; the cheap way to send a large array.
    case binary([UInt8])
}

/// A value that can be sent as a statement parameter.
public protocol PostgresEncodable: Sendable {
    var postgresParameter: PostgresParameter { get }
}

extension PostgresParameter: PostgresEncodable {
    /// A parameter encoded ahead of time, off the connection's thread.
    public var postgresParameter: PostgresParameter { self }
}

/// A value that can be an element of an array parameter, which travels in PostgreSQL's binary array format:
/// a batch's arrays hold thousands of elements, and printing then parsing them as text cost more than the
/// statements themselves.
public protocol PostgresArrayElement: PostgresEncodable {
    /// The OID of the element type, which the server checks against the array type the statement expects.
    static var postgresElementType: UInt32 { get }
    /// Appends the element's length (-1 for NULL) and binary form.
    func appendPostgresElement(to buffer: inout [UInt8])
}

extension [UInt8] {
    @inlinable
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension PostgresArrayElement where Self: FixedWidthInteger {
    @inlinable
    public func appendPostgresElement(to buffer: inout [UInt8]) {
        buffer.appendBigEndian(Int32(MemoryLayout<Self>.size))
        buffer.appendBigEndian(self)
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    /// Only meaningful inside an array: a nil parameter of its own is passed as SQL NULL by the connection.
    public var postgresParameter: PostgresParameter { self?.postgresParameter ?? .text("") }
}

extension Optional: PostgresArrayElement where Wrapped: PostgresArrayElement {
    public static var postgresElementType: UInt32 { Wrapped.postgresElementType }

    @inlinable
    public func appendPostgresElement(to buffer: inout [UInt8]) {
        guard let self else { return buffer.appendBigEndian(Int32(-1)) }
        self.appendPostgresElement(to: &buffer)
    }
}

extension String: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(self) }
    public static var postgresElementType: UInt32 { 25 }

    @inlinable
    public func appendPostgresElement(to buffer: inout [UInt8]) {
        buffer.appendBigEndian(Int32(utf8.count))
        buffer.append(contentsOf: utf8)
    }
}

extension Int: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(String(self)) }
    /// `int8`: a Swift `Int` has 64 bits on every platform this runs on.
    public static var postgresElementType: UInt32 { 20 }
}

extension Int32: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(String(self)) }
    public static var postgresElementType: UInt32 { 23 }
}

extension Int64: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(String(self)) }
    public static var postgresElementType: UInt32 { 20 }
}

extension Bool: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(self ? "t" : "f") }
}

extension UUID: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(uuidString) }
    public static var postgresElementType: UInt32 { 2950 }

    @inlinable
    public func appendPostgresElement(to buffer: inout [UInt8]) {
        buffer.appendBigEndian(Int32(16))
        withUnsafeBytes(of: uuid) { buffer.append(contentsOf: $0) }
    }
}

extension Timestamp: PostgresArrayElement {
    public var postgresParameter: PostgresParameter { .text(rfc3339) }
    public static var postgresElementType: UInt32 { 1184 }

    /// Microseconds since 2000-01-01 UTC, PostgreSQL's epoch.
    @inlinable
    public func appendPostgresElement(to buffer: inout [UInt8]) {
        buffer.appendBigEndian(Int32(8))
        buffer.appendBigEndian(microsecondsSinceEpoch - 946_684_800_000_000)
    }
}

extension Array: PostgresEncodable where Element: PostgresArrayElement {
    /// A one-dimensional array in the format of PostgreSQL's `array_recv`: dimensions, flags, element type,
    /// length and lower bound, then each element with its length. Inlinable, with the elements' encoders, so
    /// that a caller's arrays are encoded by code specialized for their element type: through the protocol's
    /// witnesses, encoding took a sixth more of the CPU of preparing a batch.
    @inlinable
    public var postgresParameter: PostgresParameter {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(20 + count * 12)
        buffer.appendBigEndian(Int32(isEmpty ? 0 : 1))
        buffer.appendBigEndian(Int32(0))
        buffer.appendBigEndian(Element.postgresElementType)
        if !isEmpty {
            buffer.appendBigEndian(Int32(count))
            buffer.appendBigEndian(Int32(1))
        }
        for element in self { element.appendPostgresElement(to: &buffer) }
        return .binary(buffer)
    }
}

extension [UInt8] {
    /// The bytes of a `bytea` as PostgreSQL prints it in text (`\x` then hex digits); nil for anything else. Read
    /// through a pointer: a report decodes megabytes of bitmaps.
    init?(postgresHex text: String) {
        var text = text
        let decoded = text.withUTF8 { digits -> [UInt8]? in
            guard digits.count >= 2, digits.count % 2 == 0, digits[0] == UInt8(ascii: "\\"),
                digits[1] == UInt8(ascii: "x")
            else { return nil }
            func nibble(_ digit: UInt8) -> UInt8? {
                switch digit {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit &- UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit &- UInt8(ascii: "a") &+ 10
                default: nil
                }
            }
            let count = digits.count / 2 - 1
            var failed = false
            let bytes = [UInt8](unsafeUninitializedCapacity: count) { bytes, initialized in
                for index in 0..<count {
                    guard let high = nibble(digits[2 + 2 * index]), let low = nibble(digits[3 + 2 * index]) else {
                        failed = true
                        break
                    }
                    bytes[index] = high << 4 | low
                    initialized = index + 1
                }
            }
            return failed ? nil : bytes
        }
        guard let decoded else { return nil }
        self = decoded
    }
}

/// A `bytea` element of an array parameter.
public struct PostgresBytes: PostgresArrayElement {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var postgresParameter: PostgresParameter { .binary(bytes) }
    public static var postgresElementType: UInt32 { 17 }

    public func appendPostgresElement(to buffer: inout [UInt8]) {
        buffer.appendBigEndian(Int32(bytes.count))
        buffer.append(contentsOf: bytes)
    }
}

/// The rows a statement returned, copied out of libpq, in text format.
public struct PostgresRows: Sendable {
    public let columns: [String]
    private let cells: [String?]
    /// The number of rows a data-changing statement affected (`INSERT 0 5` gives 5), else the row count.
    public let affectedRows: Int

    init(columns: [String], cells: [String?], affectedRows: Int) {
        self.columns = columns
        self.cells = cells
        self.affectedRows = affectedRows
    }

    public var count: Int { columns.isEmpty ? 0 : cells.count / columns.count }

    public subscript(row: Int) -> PostgresRow {
        PostgresRow(columns: columns, cells: cells[(row * columns.count)..<((row + 1) * columns.count)])
    }

    public var rows: [PostgresRow] { (0..<count).map { self[$0] } }
}

/// One row; cells are read by column position with the type the caller expects.
public struct PostgresRow: Sendable {
    public let columns: [String]
    let cells: ArraySlice<String?>

    /// The text of column `index`, nil for SQL NULL.
    public subscript(index: Int) -> String? {
        cells[cells.startIndex + index]
    }

    public func string(_ index: Int) throws(PostgresError) -> String {
        guard let text = self[index] else { throw unexpected(index, "is NULL") }
        return text
    }

    public func int(_ index: Int) throws(PostgresError) -> Int {
        guard let value = self[index].flatMap({ Int($0) }) else { throw unexpected(index, "is not an integer") }
        return value
    }

    /// A `bytea`.
    public func bytes(_ index: Int) throws(PostgresError) -> [UInt8] {
        guard let bytes = self[index].flatMap({ [UInt8](postgresHex: $0) }) else {
            throw unexpected(index, "is not bytea")
        }
        return bytes
    }

    public func bool(_ index: Int) throws(PostgresError) -> Bool {
        switch self[index] {
        case "t": return true
        case "f": return false
        default: throw unexpected(index, "is not a boolean")
        }
    }

    /// A `timestamptz`, as the server prints it in UTC (the connection's time zone): `2023-02-08 08:29:58.2244+00`.
    public func optionalTimestamp(_ index: Int) throws(PostgresError) -> Timestamp? {
        guard let text = self[index] else { return nil }
        guard text.hasSuffix("+00"), let space = text.firstIndex(of: " ") else {
            throw unexpected(index, "is not a UTC timestamp")
        }
        let rfc3339 =
            text[..<space] + "T" + text[text.index(after: space)..<text.index(text.endIndex, offsetBy: -3)] + "Z"
        guard let timestamp = try? Timestamp(rfc3339: String(rfc3339)) else {
            throw unexpected(index, "is not a UTC timestamp")
        }
        return timestamp
    }

    private func unexpected(_ index: Int, _ problem: String) -> PostgresError {
        let name = index < columns.count ? columns[index] : "#\(index)"
        return PostgresError(.unexpectedResult, "column \(name) \(problem)")
    }
}
