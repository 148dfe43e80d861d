import Basics
import Logging
import PostgresClient
import Synchronization

/// The rollups in PostgreSQL: a pool of SELECT-only connections, the readiness probe on a connection of its own, and
/// which zones have daily rows. Each report reads on one connection (`read(_:)`), the rollups' version first.
public struct PostgresReportRepository: ReportRepository {
    let pool: PostgresPool
    private let probePool: PostgresPool
    private let readiness: ReadinessProbe
    private let readyZones: ReadyZones

    /// A store reading through `pool`. The readiness probe gets a connection of its own, so that a pool busy with
    /// slow reports never makes the probe wait or fail while the database answers.
    public init(pool: PostgresPool) {
        self.pool = pool
        // libpq's shortest connection timeout, so that a probe of a server that accepts and never answers ends soon
        // after its answer was given.
        var probeConfiguration = pool.configuration
        probeConfiguration.options["connect_timeout"] = "2"
        self.probePool = PostgresPool(
            configuration: probeConfiguration, maxConnections: 1, acquireTimeout: .seconds(2),
            logger: Logger(label: "report-api.probe"))
        self.readiness = ReadinessProbe(pool: probePool)
        self.readyZones = ReadyZones()
    }

    /// Closes the connections of the reports and of the probe, once the requests that hold them are done.
    public func close() async {
        await pool.close()
        await probePool.close()
    }

    public var statementTimeout: Duration { pool.configuration.statementTimeout ?? .zero }

    public func read<T: Sendable>(_ body: (any ReportQueries) async throws -> T) async throws
        -> (freshness: Freshness, value: T)
    {
        try await pool.withConnection { connection in
            let freshness = try await Freshness.read(on: connection)
            return (freshness, try await body(PostgresReportQueries(connection: connection, readyZones: readyZones)))
        }
    }

    public func isFolded(_ zone: String) async throws -> Bool {
        try await readyZones.contains(zone) { try await pool.withConnection { try await ReadyZones.read(on: $0) } }
    }

    /// Each page is read on a connection taken from the pool and returned before `body` runs (the next page starts
    /// after the last id of this one), so a client that reads slowly, or not at all, holds no database connection.
    /// Pages are not one snapshot: a fold that commits between two pages shows in the later one.
    public func streamUserVisits(after: Int32, pageSize: Int, _ body: ([UserVisits]) async throws -> Void)
        async throws
    {
        var last = after
        while true {
            let page = try await pool.withConnection {
                try await PostgresReportQueries(connection: $0, readyZones: readyZones).userVisits(
                    after: last, limit: pageSize)
            }
            guard let lastUser = page.last else { return }
            try await body(page)
            guard page.count == pageSize else { return }
            last = Int32(lastUser.userID)
        }
    }

    /// Whether the database answers `SELECT 1` within `deadline`, asked at most once a second whatever the number of
    /// callers (`ReadinessProbe`).
    public func answers(within deadline: Duration) async -> Bool {
        await readiness.databaseAnswers(within: deadline)
    }
}

/// One user's line of `user_visits` or `top_members`.
public struct UserVisits: Sendable, Equatable {
    public var userID: Int
    public var visits: Int
    public var joinedAt: Timestamp?

    public init(userID: Int, visits: Int, joinedAt: Timestamp?) {
        self.userID = userID
        self.visits = visits
        self.joinedAt = joinedAt
    }
}

/// The figures of `summary`.
public struct Summary: Sendable, Equatable {
    public var checkins: Int
    public var users: Int
    public var firstCheckin: Timestamp?
    public var lastCheckin: Timestamp?
    public var lastFolded: Timestamp?
}

/// The readiness probe's question to the database, asked at most once a second: callers within a second of the last
/// answer get it, and callers while it is asked wait for that one answer, so a flood of probes costs the database
/// one query a second. The probe runs on a pool of its own, and its answer is given by `deadline`.
final class ReadinessProbe: Sendable {
    private struct State {
        var answer = false
        var answeredAt: ContinuousClock.Instant?
        /// The question being asked, if any: owned by the probe, which cancels it when it goes away.
        var asking: Task<Void, Never>?
        var waiters: [CheckedContinuation<Bool, Never>] = []
    }

    private let ask: @Sendable () async -> Bool
    private let state = Mutex(State())
    private static let reuse = Duration.seconds(1)

    /// A probe that asks with `ask`, which must end soon after it is cancelled.
    init(ask: @escaping @Sendable () async -> Bool) {
        self.ask = ask
    }

    /// A probe asking `SELECT 1` on `pool`.
    convenience init(pool: PostgresPool) {
        self.init { (try? await pool.withConnection { try await $0.query("SELECT 1") }) != nil }
    }

    deinit {
        state.withLock { $0.asking?.cancel() }
    }

    func databaseAnswers(within deadline: Duration) async -> Bool {
        let now = ContinuousClock.now
        return await withCheckedContinuation { continuation in
            let answer = state.withLock { state -> Bool? in
                if let answeredAt = state.answeredAt, now - answeredAt < Self.reuse { return state.answer }
                state.waiters.append(continuation)
                if state.asking == nil {
                    let ask = self.ask
                    state.asking = Task { [weak self] in
                        await Self.race(ask, against: deadline) { self?.answered($0) }
                    }
                }
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
    }

    private func answered(_ answer: Bool) {
        let waiters = state.withLock { state in
            state.answer = answer
            state.answeredAt = .now
            state.asking = nil
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: answer) }
    }

    /// Asks, raced against `deadline`: whichever ends first is the answer, handed to `answered` at once, and the
    /// other is cancelled (a query still running is cancelled in PostgreSQL). A connection attempt that no cancel
    /// reaches ends by its own timeout, after the answer was given.
    private static func race(
        _ ask: @escaping @Sendable () async -> Bool, against deadline: Duration, answered: (Bool) -> Void
    ) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await ask() }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return false
            }
            answered(await group.next() ?? false)
            group.cancelAll()
        }
    }
}

/// The zones whose daily rows are filled, read from `report_zones` at most every ten seconds: zones change only
/// when `consumer migrate` runs.
final class ReadyZones: Sendable {
    private struct Cache {
        var zones: Set<String> = []
        var readAt: ContinuousClock.Instant?
    }

    private let cache = Mutex(Cache())
    private static let lifetime = Duration.seconds(10)

    /// Whether `zone` is ready, reading the zones with `read` when the cached ones are older than their lifetime.
    func contains(_ zone: String, reading read: () async throws -> Set<String>) async throws -> Bool {
        let now = ContinuousClock.now
        let cached: Set<String>? = cache.withLock { cache in
            guard let readAt = cache.readAt, now - readAt < Self.lifetime else { return nil }
            return cache.zones
        }
        if let cached { return cached.contains(zone) }
        let zones = try await read()
        cache.withLock { $0 = Cache(zones: zones, readAt: now) }
        return zones.contains(zone)
    }

    static func read(on connection: PostgresConnection) async throws -> Set<String> {
        Set(try await connection.query("SELECT zone FROM report_zones WHERE ready").rows.map { try $0.string(0) })
    }
}
