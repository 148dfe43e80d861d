import Basics
import Foundation
import Pipeline
import PostgresClient
import Synchronization

/// The rollups in memory, computed from the events folded into it: for route tests and demos that need no server.
/// Its answers are those of the PostgreSQL rollups for the same events (local days and hours from Foundation's
/// calendar), at the cost of a scan of every event per report.
public final class MemoryReportRepository: ReportRepository {
    private struct State {
        var counted: Set<UUID> = []
        var checkins: [Event] = []
        var joined: [Int32: Timestamp] = [:]
        var version: Int64 = 0
        var lastFolded: Timestamp?
        var isDown = false
    }

    private let state = Mutex(State())
    private let foldedZones: Set<String>

    /// An empty store whose zones `folded` have daily rows (cheap reports); any other zone is answered too.
    public init(foldedZones: Set<String> = ["UTC"]) {
        self.foldedZones = foldedZones
    }

    /// Counts the events of `events` not counted before, as one fold committed at `at`.
    public func fold(_ events: [Event], at: Timestamp = .now) {
        state.withLock { state in
            var changed = false
            for event in events where state.counted.insert(event.id).inserted {
                changed = true
                switch event.kind {
                case .checkin: state.checkins.append(event)
                case .userJoined:
                    state.joined[event.userID] =
                        state.joined[event.userID].map { min($0, event.occurredAt) } ?? event.occurredAt
                }
            }
            if changed {
                state.version += 1
                state.lastFolded = at
            }
        }
    }

    /// While down, every read fails as a database that cannot be reached does.
    public func setDown(_ isDown: Bool) {
        state.withLock { $0.isDown = isDown }
    }

    public var statementTimeout: Duration { .zero }

    public func read<T: Sendable>(_ body: (any ReportQueries) async throws -> T) async throws
        -> (freshness: Freshness, value: T)
    {
        let snapshot = state.withLock { $0 }
        guard !snapshot.isDown else {
            throw PostgresError(.connectionFailed, "could not connect to the database")
        }
        let queries = MemoryReportQueries(
            checkins: snapshot.checkins, joined: snapshot.joined, lastFolded: snapshot.lastFolded)
        return (Freshness(version: snapshot.version, lastFolded: snapshot.lastFolded), try await body(queries))
    }

    public func isFolded(_ zone: String) async throws -> Bool {
        foldedZones.contains(zone)
    }

    public func streamUserVisits(after: Int32, pageSize: Int, _ body: ([UserVisits]) async throws -> Void)
        async throws
    {
        var last = after
        while true {
            let (_, page) = try await read { try await $0.userVisits(after: last, limit: pageSize) }
            guard let lastUser = page.last else { return }
            try await body(page)
            guard page.count == pageSize else { return }
            last = Int32(lastUser.userID)
        }
    }

    public func answers(within deadline: Duration) async -> Bool {
        !state.withLock { $0.isDown }
    }
}

/// The reports computed from a snapshot of the events.
struct MemoryReportQueries: ReportQueries {
    let checkins: [Event]
    let joined: [Int32: Timestamp]
    let lastFolded: Timestamp?

    /// The local day and hour of `instant` in `zone`.
    private static func local(_ instant: Timestamp, in zone: String) -> (day: String, hour: Int, weekday: Int)? {
        guard let timeZone = TimeZone(identifier: zone) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let seconds = instant.microsecondsSinceEpoch.floorDivided(by: 1_000_000).quotient
        let parts = calendar.dateComponents(
            [.year, .month, .day, .hour], from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        guard let year = parts.year, let month = parts.month, let day = parts.day, let hour = parts.hour,
            let date = LocalDate(String(format: "%04d-%02d-%02d", year, month, day))
        else { return nil }
        // 1970-01-01 was a Thursday, ISO weekday 4.
        return (date.description, hour, ((date.dayNumber + 3) % 7 + 7) % 7 + 1)
    }

    /// The check-ins of `query`'s range and space, each with its local day, hour and weekday.
    private func visits(_ query: UsageQuery) -> [(event: Event, day: String, hour: Int, weekday: Int)] {
        checkins.compactMap { event in
            guard query.space == nil || (event.spaceID ?? Event.defaultSpaceID) == query.space,
                let local = Self.local(event.occurredAt, in: query.zone)
            else { return nil }
            if let from = query.from, local.day < from.description { return nil }
            if let to = query.to, local.day > to.description { return nil }
            return (event, local.day, local.hour, local.weekday)
        }
    }

    /// The first and last local days with a visit in `zone`, of any space.
    private func daysWithData(in zone: String) -> (first: LocalDate, last: LocalDate)? {
        let days = checkins.compactMap { Self.local($0.occurredAt, in: zone)?.day }
        guard let first = days.min().flatMap({ LocalDate($0) }), let last = days.max().flatMap({ LocalDate($0) })
        else { return nil }
        return (first, last)
    }

    private func filled(_ days: [String: Int], _ query: UsageQuery) throws -> [(day: String, visits: Int)] {
        let sorted = days.sorted { $0.key < $1.key }.map { (day: $0.key, visits: $0.value) }
        guard query.fillsZeros else { return sorted }
        return try query.zeroFilled(sorted, within: daysWithData(in: query.zone))
    }

    func dailyUsage(_ query: UsageQuery) async throws -> [(day: String, visits: Int)] {
        try filled(visits(query).reduce(into: [:]) { $0[$1.day, default: 0] += 1 }, query)
    }

    func hourlyUsage(_ query: UsageQuery) async throws -> [Int: Int] {
        visits(query).reduce(into: [:]) { $0[$1.hour, default: 0] += 1 }
    }

    func weekdayHours(_ query: UsageQuery) async throws -> [Int: [Int: Int]] {
        visits(query).reduce(into: [:]) { $0[$1.weekday, default: [:]][$1.hour, default: 0] += 1 }
    }

    func uniqueVisitors(_ query: UsageQuery) async throws -> (days: [(day: String, visits: Int)], total: Int) {
        let visits = visits(query)
        let members = visits.reduce(into: [String: Set<Int32>]()) { $0[$1.day, default: []].insert($1.event.userID) }
        return (try filled(members.mapValues(\.count), query), Set(visits.map(\.event.userID)).count)
    }

    func topMembers(_ query: TopMembersQuery) async throws -> [UserVisits] {
        let counts = visits(query.range).reduce(into: [Int32: Int]()) { $0[$1.event.userID, default: 0] += 1 }
        return counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(query.limit).map {
            UserVisits(userID: Int($0.key), visits: $0.value, joinedAt: joined[$0.key])
        }
    }

    func userVisits(after: Int32, limit: Int) async throws -> [UserVisits] {
        let counts = checkins.reduce(into: [Int32: Int]()) { $0[$1.userID, default: 0] += 1 }
        return counts.filter { $0.key > after }.sorted { $0.key < $1.key }.prefix(limit).map {
            UserVisits(userID: Int($0.key), visits: $0.value, joinedAt: joined[$0.key])
        }
    }

    func spaces() async throws -> [String] {
        Set(checkins.map { $0.spaceID ?? Event.defaultSpaceID }).sorted()
    }

    func summary() async throws -> Summary {
        let users = Set(checkins.map(\.userID)).count
        return Summary(
            checkins: checkins.count, users: users, firstCheckin: checkins.map(\.occurredAt).min(),
            lastCheckin: checkins.map(\.occurredAt).max(), lastFolded: lastFolded)
    }
}
