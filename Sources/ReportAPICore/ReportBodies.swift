import Pipeline

/// A report's rows, rendered as JSON (the legacy shapes) or CSV (for spreadsheets) from the same values.
protocol ReportBody: Sendable {
    var json: String { get }
    var csv: String { get }
}

extension ReportBody {
    func rendered(as format: ReportFormat) -> String {
        format == .csv ? csv : json
    }
}

/// `daily_usage`.
struct DailyUsage: ReportBody {
    var days: [(day: String, visits: Int)]
    var json: String { ReportJSON.dailyUsage(days) }
    var csv: String { ReportCSV.dailyUsage(days) }
}

/// `unique_visitors`.
struct UniqueVisitors: ReportBody {
    var days: [(day: String, visits: Int)]
    var total: Int
    var json: String { ReportJSON.uniqueVisitors(days, total: total) }
    var csv: String { ReportCSV.uniqueVisitors(days, total: total) }
}

/// `hourly_usage`.
struct HourlyUsage: ReportBody {
    var hours: [Int: Int]
    var json: String { ReportJSON.hourlyUsage(hours) }
    var csv: String { ReportCSV.hourlyUsage(hours) }
}

/// `weekday_hours`.
struct WeekdayHours: ReportBody {
    var cells: [Int: [Int: Int]]
    var json: String { ReportJSON.weekdayHours(cells) }
    var csv: String { ReportCSV.weekdayHours(cells) }
}

/// `top_members`.
struct TopMembers: ReportBody {
    var members: [UserVisits]
    var json: String { ReportJSON.topMembers(members) }
    var csv: String { ReportCSV.topMembers(members) }
}

/// A page of `user_visits`.
struct UserVisitsPage: ReportBody {
    var users: [UserVisits]
    var json: String { "{" + ReportJSON.userVisitsMembers(users) + "}" }
    var csv: String { ReportCSV.userVisitsHeader + ReportCSV.userVisitsRows(users) }
}

extension Summary: ReportBody {
    var json: String { ReportJSON.summary(self) }
    var csv: String { ReportCSV.summary(self) }
}

/// `filters`, which has no CSV form: its CSV is its JSON.
struct Filters: ReportBody {
    var defaultZone: String
    var zones: [String]
    var spaces: [String]
    var json: String { ReportJSON.filters(defaultZone: defaultZone, zones: zones, spaces: spaces) }
    var csv: String { json }
}
