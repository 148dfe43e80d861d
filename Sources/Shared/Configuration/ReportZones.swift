import Foundation

/// The time zones that reports are kept for, shared by the consumer (which folds daily and hourly rows for each)
/// and the report API (which reads those rows, and picks a default zone).
public struct ReportZones: Sendable, Equatable {
    /// `REPORT_TIMEZONES`: comma-separated IANA names whose daily and hourly rows are folded with every batch;
    /// default `UTC`. Other zones are still answered exactly, from the 15-minute rows.
    public var folded: [String]
    /// `REPORT_TIMEZONE`: the report API's zone when a query names none; default `UTC`.
    public var defaultZone: String

    public init(folded: [String], defaultZone: String) {
        self.folded = folded
        self.defaultZone = defaultZone
    }

    public static func fromEnvironment(_ environment: Environment) throws(ConfigurationError) -> ReportZones {
        var folded: [String] = []
        if let list = environment["REPORT_TIMEZONES"] {
            for item in list.split(separator: ",") {
                let name = item.trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty else { continue }
                guard isKnownTimeZone(name) else {
                    throw ConfigurationError(variable: "REPORT_TIMEZONES", problem: "names an unknown time zone \(quoted(name))")
                }
                if !folded.contains(name) { folded.append(name) }
            }
        }
        if folded.isEmpty { folded = ["UTC"] }
        let defaultZone = environment["REPORT_TIMEZONE"] ?? "UTC"
        guard isKnownTimeZone(defaultZone) else {
            throw ConfigurationError(variable: "REPORT_TIMEZONE", problem: "names an unknown time zone \(quoted(defaultZone))")
        }
        return ReportZones(folded: folded, defaultZone: defaultZone)
    }
}

/// Whether `name` is an IANA zone name this machine knows ("Asia/Kathmandu", "UTC"), rather than an
/// abbreviation or offset that Foundation would also accept ("IST", "GMT+5").
public func isKnownTimeZone(_ name: String) -> Bool {
    knownTimeZoneIdentifiers.contains(name)
}

private let knownTimeZoneIdentifiers = Set(TimeZone.knownTimeZoneIdentifiers).union(["UTC"])
