extension Timestamp {
    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The IMF-fixdate of HTTP (`Sun, 06 Dec 2026 07:00:40 GMT`), to the second.
    public var httpDate: String {
        let f = utcFields
        let days = microsecondsSinceEpoch.floorDivided(by: 86_400_000_000).quotient
        // 1970-01-01 was a Thursday.
        let weekday = Self.weekdays[Int((days + 4).floorDivided(by: 7).remainder)]
        return "\(weekday), \(pad(f.day, 2)) \(Self.months[f.month - 1]) \(pad(f.year, 4)) "
            + "\(pad(f.hour, 2)):\(pad(f.minute, 2)):\(pad(f.second, 2)) GMT"
    }

    /// Parses an IMF-fixdate; nil for anything else (the obsolete forms RFC 9110 still lets clients send are
    /// treated as no date, which at worst answers in full).
    public init?(httpDate text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]),
            let month = Self.months.firstIndex(of: String(parts[2])), let year = Int(parts[3])
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3, (1...daysInMonth(year: year, month: month + 1)).contains(day), time[0] < 24,
            time[1] < 60, time[2] < 61
        else { return nil }
        self.init(year: year, month: month + 1, day: day, hour: time[0], minute: time[1], second: time[2])
    }
}
