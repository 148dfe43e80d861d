import Basics
import Pipeline

/// A bad query: answered 400 with `{"error": message}`, the message naming the parameter.
public struct QueryError: Error, Equatable, Sendable {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }
}

/// The representation a report is asked in: JSON, or CSV with `format=csv` or `Accept: text/csv`.
public enum ReportFormat: String, Sendable {
    case json
    case csv

    /// The format `format` names, else the one `accept` (the `Accept` header) prefers; and the query's other
    /// parameters, for the report's own parser.
    static func of(_ parameters: [(String, String)], accept: String?) throws(QueryError)
        -> (format: ReportFormat, rest: [(String, String)])
    {
        let named = parameters.filter { $0.0 == "format" }
        guard named.count <= 1 else { throw QueryError("format is given more than once") }
        let rest = parameters.filter { $0.0 != "format" }
        if let value = named.first?.1 {
            guard let format = ReportFormat(rawValue: value) else {
                throw QueryError("format must be json or csv, got \(value.quoted())")
            }
            return (format, rest)
        }
        return (preferred(accept: accept), rest)
    }

    /// CSV when `accept` weighs `text/csv` above JSON (`application/json`, `application/*` or `*/*`), else JSON,
    /// the legacy answer: `text/csv` and `text/csv, */*;q=0.1` ask for CSV; `application/json, text/csv;q=0.5` and
    /// `*/*` do not.
    public static func preferred(accept: String?) -> ReportFormat {
        var csv = 0.0
        var json = 0.0
        for range in accept?.split(separator: ",") ?? [] {
            let parts = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            let quality = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            switch parts.first {
            case "text/csv": csv = max(csv, quality)
            case "application/json", "application/*", "*/*": json = max(json, quality)
            default: break
            }
        }
        return csv > json ? .csv : .json
    }
}

/// The query of `daily_usage`, `hourly_usage` and `weekday_hours`: a range of days in a time zone, for one space or
/// all.
public struct UsageQuery: Equatable, Sendable {
    /// The first day, inclusive; nil for no lower bound.
    public var from: LocalDate?
    /// The last day, inclusive; nil for no upper bound.
    public var to: LocalDate?
    /// An IANA zone name.
    public var zone: String
    /// One space, or nil for all.
    public var space: String?
    /// `fill=zero`: every day of the range is listed, with 0 where nobody came (`daily_usage`), for charts and
    /// spreadsheets; without it, such days are left out, as the legacy service did.
    public var fillsZeros: Bool

    /// The longest explicit range: ten years of days, leap days included.
    public static let maxRangeDays = 3_653

    public init(
        from: LocalDate? = nil, to: LocalDate? = nil, zone: String, space: String? = nil, fillsZeros: Bool = false
    ) {
        self.from = from
        self.to = to
        self.zone = zone
        self.space = space
        self.fillsZeros = fillsZeros
    }

    /// Parses `from`, `to`, `tz`, `space` and `fill`; `defaultZone` answers when `tz` is absent.
    public init(parameters: [(String, String)], defaultZone: String) throws(QueryError) {
        try self.init(
            values: QueryParameters(parameters, allowed: ["from", "to", "tz", "space", "fill"]),
            defaultZone: defaultZone)
    }

    /// Reads `from`, `to`, `tz`, `space` and `fill` of `values`, which may hold others that the caller reads.
    init(values: QueryParameters, defaultZone: String) throws(QueryError) {
        from = try values["from"].map { text throws(QueryError) in try Self.date(text, name: "from") }
        to = try values["to"].map { text throws(QueryError) in try Self.date(text, name: "to") }
        zone = values["tz"] ?? defaultZone
        guard ReportZones.isKnown(zone) else {
            throw QueryError("tz must be an IANA time zone such as Asia/Kolkata, got \(zone.quoted())")
        }
        fillsZeros =
            try values["fill"].map { fill throws(QueryError) in
                guard fill == "zero" else { throw QueryError("fill must be zero, got \(fill.quoted())") }
                return true
            } ?? false
        space = values["space"]
        if let space, !Event.isValidSpaceID(space) {
            throw QueryError("space must be 1 to 64 of A-Z a-z 0-9 . _ -, got \(space.quoted())")
        }
        if let from, let to {
            guard from <= to else { throw QueryError("from (\(from)) is after to (\(to))") }
            guard to.dayNumber - from.dayNumber < Self.maxRangeDays else {
                throw QueryError("from..to spans more than 10 years; ask for a shorter range")
            }
        }
    }

    private static func date(_ text: String, name: String) throws(QueryError) -> LocalDate {
        guard let date = LocalDate(text) else {
            throw QueryError("\(name) must be a date YYYY-MM-DD, got \(text.quoted())")
        }
        return date
    }
}

extension UsageQuery {
    /// The day numbers of from..to cut to `data`'s first and last days (an open end is the data's).
    func days(within data: (first: LocalDate, last: LocalDate)) -> Range<Int> {
        let first = max(from ?? data.first, data.first).dayNumber
        let last = min(to ?? data.last, data.last).dayNumber
        return first..<max(first, last + 1)
    }

    /// `days` with every day of the range that lies within `data` (the first and last days with data), 0 where
    /// absent: never more days than the data spans, nor than the range limit allows.
    func zeroFilled(_ days: [(day: String, visits: Int)], within data: (first: LocalDate, last: LocalDate)?)
        throws(QueryError) -> [(day: String, visits: Int)]
    {
        guard let data else { return days }
        let filled = self.days(within: data)
        guard filled.count <= Self.maxRangeDays else {
            throw QueryError(
                "fill=zero lists at most \(Self.maxRangeDays) days, and from..to spans \(filled.count) days of "
                    + "data: give a shorter from and to")
        }
        let visits = Dictionary(days.map { ($0.day, $0.visits) }, uniquingKeysWith: +)
        return filled.map { number in
            let day = LocalDate(dayNumber: number).description
            return (day, visits[day] ?? 0)
        }
    }
}

/// The query of `user_visits`: a page of users after a user id, or every user.
public struct UserVisitsQuery: Equatable, Sendable {
    /// The largest page.
    public static let maxLimit = 10_000

    public var limit: Int?
    /// Only users with a greater id (exclusive).
    public var after: Int32

    public init(limit: Int? = nil, after: Int32 = 0) {
        self.limit = limit
        self.after = after
    }

    public init(parameters: [(String, String)]) throws(QueryError) {
        let values = try QueryParameters(parameters, allowed: ["limit", "after"])
        limit = try values["limit"].map { text throws(QueryError) in
            guard let limit = Int(text), (1...Self.maxLimit).contains(limit) else {
                throw QueryError("limit must be an integer from 1 to \(Self.maxLimit), got \(text.quoted())")
            }
            return limit
        }
        after =
            try values["after"].map { text throws(QueryError) in
                guard let after = Int32(text), after >= 0 else {
                    throw QueryError("after must be a user id from 0 to \(Int32.max), got \(text.quoted())")
                }
                return after
            } ?? 0
    }
}

/// The query of `top_members`: the members with the most visits over a range of days in a time zone, for one space
/// or all.
public struct TopMembersQuery: Equatable, Sendable {
    /// The longest list.
    public static let maxLimit = 1_000

    /// The days, zone and space, as for the other reports (`fill` aside).
    public var range: UsageQuery
    public var limit: Int

    public init(range: UsageQuery, limit: Int = 10) {
        self.range = range
        self.limit = limit
    }

    public init(parameters: [(String, String)], defaultZone: String) throws(QueryError) {
        let values = try QueryParameters(parameters, allowed: ["from", "to", "tz", "space", "limit"])
        range = try UsageQuery(values: values, defaultZone: defaultZone)
        limit =
            try values["limit"].map { text throws(QueryError) in
                guard let limit = Int(text), (1...Self.maxLimit).contains(limit) else {
                    throw QueryError("limit must be an integer from 1 to \(Self.maxLimit), got \(text.quoted())")
                }
                return limit
            } ?? 10
    }
}

/// A report's query once parsed: what the response cache keys answers by, so that spellings of one query (parameters
/// in another order, `tz` given as the default) share one answer, and padding a URI makes no new entry.
protocol ReportQuery: Sendable {
    /// The same for the same question, different for different ones.
    var cacheKey: String { get }
}

extension UsageQuery: ReportQuery {
    var cacheKey: String {
        "tz=\(zone)&from=\(from?.description ?? "")&to=\(to?.description ?? "")&space=\(space ?? "")&fill=\(fillsZeros)"
    }
}

extension TopMembersQuery: ReportQuery {
    var cacheKey: String { range.cacheKey + "&limit=\(limit)" }
}

/// The query of a report that takes no parameters.
struct NoParameters: ReportQuery {
    init(_ parameters: [(String, String)]) throws(QueryError) {
        _ = try QueryParameters(parameters, allowed: [])
    }

    var cacheKey: String { "" }
}

/// Checks that a query names only `allowed` parameters, each once.
struct QueryParameters {
    private var values: [String: String] = [:]

    init(_ parameters: [(String, String)], allowed: Set<String>) throws(QueryError) {
        for (name, value) in parameters {
            guard allowed.contains(name) else {
                let known =
                    allowed.isEmpty ? "this path takes none" : "known: " + allowed.sorted().joined(separator: ", ")
                throw QueryError("unknown query parameter \(name.quoted()) (\(known))")
            }
            guard values[name] == nil else { throw QueryError("\(name) is given more than once") }
            values[name] = value
        }
    }

    subscript(name: String) -> String? { values[name] }
}
