import Basics
import Foundation

/// The time zones that reports are kept for, shared by the consumer (which folds local-day rows, with their hours,
/// and members' days for each) and the report API (which reads those rows, and picks a default zone).
public struct ReportZones: Sendable, Equatable {
    /// `REPORT_TIMEZONES`: comma-separated IANA names whose local-day rows are folded with every batch; default
    /// `UTC`. Other zones are still answered exactly, from the 15-minute rows.
    public var folded: [String]
    /// `REPORT_TIMEZONE`: the report API's zone when a query names none; default `UTC`.
    public var defaultZone: String

    public init(folded: [String], defaultZone: String) {
        self.folded = folded
        self.defaultZone = defaultZone
    }

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError) -> ReportZones {
        var folded: [String] = []
        if let list = environment["REPORT_TIMEZONES"] {
            for item in list.split(separator: ",") {
                let name = item.trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty else { continue }
                guard Self.isKnown(name) else {
                    throw ConfigurationError(
                        variable: "REPORT_TIMEZONES", problem: "names an unknown time zone \(name.quoted())")
                }
                if !folded.contains(name) { folded.append(name) }
            }
        }
        if folded.isEmpty { folded = ["UTC"] }
        let defaultZone = environment["REPORT_TIMEZONE"] ?? "UTC"
        guard Self.isKnown(defaultZone) else {
            throw ConfigurationError(
                variable: "REPORT_TIMEZONE", problem: "names an unknown time zone \(defaultZone.quoted())")
        }
        return ReportZones(folded: folded, defaultZone: defaultZone)
    }

    /// Whether `name` is an IANA zone name ("Asia/Kathmandu", "UTC") of the system's tz database, which PostgreSQL
    /// reads too, rather than an abbreviation ("IST") that PostgreSQL would take for a fixed offset.
    public static func isKnown(_ name: String) -> Bool {
        knownTimeZoneIdentifiers.contains(name)
    }
}

/// The zone names of the tz database: the files under `/usr/share/zoneinfo` whose names start with an upper-case
/// letter (the rest are tables and the `posix/`, `right/` variants). Foundation's list, from ICU, is the fallback
/// on a system without that folder; it lacks some current names such as `Asia/Kolkata`.
private let knownTimeZoneIdentifiers: Set<String> = {
    let root = "/usr/share/zoneinfo/"
    guard let files = FileManager.default.enumerator(atPath: root) else {
        return Set(TimeZone.knownTimeZoneIdentifiers).union(["UTC"])
    }
    var names: Set<String> = []
    for case let path as String in files {
        guard let first = path.unicodeScalars.first, CharacterSet.uppercaseLetters.contains(first),
            path != "Factory", !path.hasSuffix(".tab")
        else { continue }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + path, isDirectory: &isDirectory), !isDirectory.boolValue {
            names.insert(path)
        }
    }
    return names.isEmpty ? Set(TimeZone.knownTimeZoneIdentifiers).union(["UTC"]) : names
}()
