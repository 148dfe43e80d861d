import Foundation

/// A value that can be sent as a statement parameter, in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    /// The text PostgreSQL parses for the parameter's type.
    var postgresText: String { get }
    /// The value as an element of an array literal: quoted, or `NULL`.
    var postgresArrayElement: String { get }
}

extension PostgresEncodable {
    public var postgresArrayElement: String {
        var text = "\""
        for character in postgresText.unicodeScalars {
            if character == "\"" || character == "\\" { text += "\\" }
            text.unicodeScalars.append(character)
        }
        return text + "\""
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    /// Only meaningful inside an array: a nil parameter of its own is passed as SQL NULL by the connection.
    public var postgresText: String { self?.postgresText ?? "" }

    public var postgresArrayElement: String { self?.postgresArrayElement ?? "NULL" }
}

extension String: PostgresEncodable {
    public var postgresText: String { self }
}

extension Int: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Int32: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Int64: PostgresEncodable {
    public var postgresText: String { String(self) }
}

extension Bool: PostgresEncodable {
    public var postgresText: String { self ? "t" : "f" }
}

extension UUID: PostgresEncodable {
    public var postgresText: String { uuidString }
}

extension Timestamp: PostgresEncodable {
    public var postgresText: String { rfc3339 }
}

extension Array: PostgresEncodable where Element: PostgresEncodable {
    /// An array literal, `{"a","b",NULL}`, every element quoted so that any text is safe in it.
    public var postgresText: String {
        "{" + lazy.map(\.postgresArrayElement).joined(separator: ",") + "}"
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
