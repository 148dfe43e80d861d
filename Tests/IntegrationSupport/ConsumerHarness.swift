import AMQPClient
import Basics
import ConsumerCore
import Foundation
import Logging
import Pipeline
import PostgresClient
import ServiceLifecycle
import TestSupport
import Testing

/// A consumer's world of its own: a schema and a topology no other test uses, migrated and declared.
public struct ConsumerHarness: Sendable {
    public let schema: String
    public let topology: Topology
    public let zones: [String]
    /// The broker: `AMQP_URL`'s, or the nodes of a cluster.
    public let amqpURL: String

    /// The broker's settings, with the tests' timeout.
    public var amqp: AMQPConfiguration {
        get throws {
            var configuration = try AMQPConfiguration.fromEnvironment(EnvironmentVariables(["AMQP_URL": amqpURL]))
            configuration.timeoutSeconds = TestServers.amqpTimeoutSeconds
            return configuration
        }
    }

    /// A harness on `AMQP_URL`'s broker, or the nodes of `amqpURL`, whose quorum queues get `initialGroupSize`
    /// members when given.
    public static func make(
        zones: [String] = ["UTC", "Asia/Kolkata", "America/New_York"], amqpURL: String? = nil,
        initialGroupSize: Int? = nil
    ) async throws -> ConsumerHarness {
        let amqpURL = try amqpURL ?? TestServers.variable("AMQP_URL")
        let schema = TestServers.uniqueName("consumer")
        let topology = Topology(
            exchange: schema + ".events", queue: schema + ".rollups", deadLetterExchange: schema + ".dead",
            deliveryLimit: 5, initialGroupSize: initialGroupSize)
        try await PostgresConnection.withConnection(TestServers.database(schema: schema), logger: TestServers.logger) {
            _ = try await Migrator(schema: schema, zones: zones).run(on: $0, logger: TestServers.logger)
        }
        let harness = ConsumerHarness(schema: schema, topology: topology, zones: zones, amqpURL: amqpURL)
        try await harness.withBroker { try await $0.declare(topology) }
        return harness
    }

    public func settings(
        batchSize: Int = 200, foldConnections: Int = ConsumerSettings.defaultFoldConnections,
        changing change: (inout ConsumerSettings) -> Void = { _ in }
    ) throws -> ConsumerSettings {
        var settings = ConsumerSettings(
            database: try TestServers.database(schema: schema), amqp: try amqp, topology: topology,
            zones: ReportZones(folded: zones, defaultZone: "UTC"), batchSize: batchSize,
            foldConnections: foldConnections,
            shutdownDeadline: .seconds(10))
        change(&settings)
        return settings
    }

    /// The environment of a `consumer` process for this harness.
    public func environment(batchSize: Int = 200) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["DB_SCHEMA"] = schema
        environment["AMQP_URL"] = amqpURL
        environment["EXCHANGE"] = topology.exchange
        environment["QUEUE"] = topology.queue
        environment["DEAD_LETTER_EXCHANGE"] = topology.deadLetterExchange
        environment["DELIVERY_LIMIT"] = String(topology.deliveryLimit)
        environment["QUORUM_INITIAL_GROUP_SIZE"] = topology.initialGroupSize.map(String.init)
        environment["REPORT_TIMEZONES"] = zones.joined(separator: ",")
        environment["BATCH_SIZE"] = String(batchSize)
        environment["METRICS_PORT"] = String(TestServers.freePort())
        environment["BIND_ADDRESS"] = "127.0.0.1"
        environment["LOG_LEVEL"] = "warning"
        return environment
    }

    /// Runs `count` consumers in this process until `body` returns, then shuts them down gracefully.
    public func withConsumers<T>(
        _ count: Int = 1, batchSize: Int = 200, foldConnections: Int = ConsumerSettings.defaultFoldConnections,
        changing change: (inout ConsumerSettings) -> Void = { _ in }, _ body: () async throws -> T
    ) async throws -> T {
        // Each consumer with its members' compaction beside it, as `consumer run` has, compacting often so that the
        // tests' exact comparisons see compactions race the folds.
        let services = try (0..<count).flatMap { _ -> [any Service] in
            let settings = try settings(batchSize: batchSize, foldConnections: foldConnections, changing: change)
            return [
                RollupConsumer(settings: settings, logger: TestServers.logger),
                MemberCompaction(
                    configuration: settings.database, interval: .milliseconds(100), logger: TestServers.logger),
            ]
        }
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, logger: TestServers.logger)
        // As SHUTDOWN_DEADLINE_S does for `consumer run`: a fold that waits for the database is cancelled rather than
        // waited for without end.
        configuration.maximumGracefulShutdownDuration = .seconds(30)
        let group = ServiceGroup(configuration: configuration)
        let running = Task { try await group.run() }
        let result: T
        do {
            result = try await body()
        } catch {
            await group.triggerGracefulShutdown()
            try await running.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
        return result
    }

    /// Publishes bodies as events (docs/events.md) and requires every one confirmed.
    public func publish(_ bodies: [[UInt8]], headers: AMQPTable? = nil) async throws {
        var properties = AMQPProperties.event()
        properties.headers = headers
        let messages = bodies.map {
            AMQPOutgoingMessage(exchange: topology.exchange, routingKey: "checkin", properties: properties, body: $0)
        }
        try await withBroker { amqp in
            try await amqp.enableConfirms()
            let outcomes = try await amqp.publishConfirmed(messages, window: 500)
            #expect(outcomes.allSatisfy { $0 == .confirmed })
        }
    }

    /// Runs `body` with a connection to the harness's broker, closed afterwards.
    public func withBroker<T>(_ body: (AMQPConnection) async throws -> T) async throws -> T {
        try await AMQPConnection.withConnection(amqp, logger: TestServers.logger, body)
    }

    /// Runs `body` with a new harness (`make`), and drops its schema, queues and exchanges afterwards, whether `body`
    /// threw or not.
    public static func with<T>(
        zones: [String] = ["UTC", "Asia/Kolkata", "America/New_York"], amqpURL: String? = nil,
        initialGroupSize: Int? = nil, _ body: (ConsumerHarness) async throws -> T
    ) async throws -> T {
        let harness = try await make(zones: zones, amqpURL: amqpURL, initialGroupSize: initialGroupSize)
        return try await cleaningUp(harness.cleanup) { try await body(harness) }
    }

    /// Runs `body` on a connection to the harness's schema, closed afterwards.
    public func withDatabase<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await PostgresConnection.withConnection(
            TestServers.database(schema: schema), logger: TestServers.logger, body)
    }

    public func database() async throws -> PostgresConnection {
        try await PostgresConnection.connect(TestServers.database(schema: schema), logger: TestServers.logger)
    }

    /// Waits until `counted` distinct events are counted, or fails after `timeout`.
    public func waitUntilCounted(_ counted: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        var current = 0
        try await withDatabase { connection in
            while ContinuousClock.now < deadline {
                current = try await connection.query("SELECT count(*) FROM counted_events")[0].int(0)
                if current >= counted { return }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        if current >= counted { return }
        Issue.record("only \(current) of \(counted) events were counted in \(timeout)")
    }

    /// Waits until `counted` events are counted and the queue has nothing left to deliver, then a moment more for
    /// the consumer to fold and acknowledge what it holds (duplicates among it).
    public func waitUntilDrained(counted: Int, timeout: Duration = .seconds(60)) async throws {
        try await waitUntilCounted(counted, timeout: timeout)
        let deadline = ContinuousClock.now + timeout
        while try await readyMessages(in: topology.queue) > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(1_500))
    }

    /// The messages waiting in a queue (neither delivered nor acknowledged).
    public func readyMessages(in queue: String) async throws -> Int {
        try await withBroker { try await $0.queueStatus(queue).messageCount }
    }

    /// Reads every message of the dead-letter queue.
    public func deadLetters() async throws -> [AMQPDelivery] {
        try await withBroker { amqp in
            try await amqp.consume(topology.deadLetterQueue)
            var deliveries: [AMQPDelivery] = []
            while let delivery = try await amqp.nextDelivery(timeout: .seconds(1)) {
                deliveries.append(delivery)
            }
            if let last = deliveries.last { try await amqp.ack(last.deliveryTag, multiple: true) }
            return deliveries
        }
    }

    /// The rollups as stored, in the form of `ExpectedRollups`.
    public func storedRollups() async throws -> ExpectedRollups {
        try await withDatabase { connection in
            var stored = ExpectedRollups()
            (stored.daily, stored.hourly) = try await connection.localDays()
            for row in try await connection.query("SELECT bucket_start, space_id, visits FROM visits_quarter_hour").rows
            {
                let start = try #require(try row.optionalTimestamp(0))
                stored.quarterHours["\(start.rfc3339) \(try row.string(1))"] = try row.int(2)
            }
            try await compactMembers()
            let memberRows = try await connection.query(
                """
                SELECT bucket_start, space_id, user_id, sum(visits) FROM member_visits GROUP BY 1, 2, 3
                """)
            for row in memberRows.rows {
                let start = try #require(try row.optionalTimestamp(0))
                stored.memberVisits["\(start.rfc3339) \(try row.string(1)) \(try row.int(2))"] = try row.int(3)
            }
            var numbered: [Int32: Int32] = [:]
            for row in try await connection.query("SELECT ordinal, user_id FROM member_ordinals").rows {
                numbered[Int32(try row.int(0))] = Int32(try row.int(1))
            }
            let days = try await connection.query("SELECT zone, day::text, space_id, members, repeats FROM member_days")
            for row in days.rows {
                let key = "\(try row.string(0)) \(try row.string(1)) \(try row.string(2).isEmpty ? "*" : row.string(2))"
                let day = try MemberDay(presence: row.bytes(3), encodedRepeats: row.bytes(4))
                var members: [Int32: Int] = [:]
                day.forEachMember { ordinal, visits in members[numbered[ordinal] ?? -ordinal] = Int(visits) }
                stored.memberDays[key] = members
            }
            let users = try await connection.query(
                "SELECT user_id, visits, first_visit_at, last_visit_at, joined_at FROM user_activity")
            for row in users.rows {
                stored.users[Int32(try row.int(0))] = ExpectedRollups.User(
                    visits: try row.int(1), first: try row.optionalTimestamp(2), last: try row.optionalTimestamp(3),
                    joined: try row.optionalTimestamp(4))
            }
            let totals = try await connection.query(
                """
                SELECT coalesce(sum(checkins), 0), min(first_checkin_at), max(last_checkin_at), coalesce(sum(users), 0)
                FROM fold_totals
                """)[0]
            stored.checkins = try totals.int(0)
            stored.firstCheckin = try totals.optionalTimestamp(1)
            stored.lastCheckin = try totals.optionalTimestamp(2)
            stored.visitedUsers = try totals.int(3)
            return stored
        }
    }

    /// Runs the members' compactor until nothing waits for it, as a consumer's `MemberCompaction` would (a replica's
    /// compaction under way is waited for).
    public func compactMembers() async throws {
        try await withDatabase { connection in
            let schema = self.schema
            while true {
                let taken = try await connection.withTransaction {
                    try MemberCompactor().compact(on: $0, schema: schema)
                }
                let waiting = try await connection.query(
                    """
                    SELECT count(*) FROM member_visits
                    WHERE appended_by >= (SELECT compacted_below FROM member_compaction)
                    """)[0].int(0)
                if taken == 0 && waiting == 0 { return }
                if taken == nil || taken == 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
        }
    }

    public func cleanup() async throws {
        try await Schemas.drop(schema)
        try await withBroker { try await $0.delete(topology) }
    }

    /// Waits until `count` messages are ready in the dead-letter queue, for 30 s at most.
    public func waitForDeadLetters(_ count: Int) async throws {
        try await Waiting.until(within: .seconds(30)) {
            try await readyMessages(in: topology.deadLetterQueue) >= count
        }
    }
}

/// The rollups a set of events must produce, computed independently of the SQL under test: local days and hours
/// come from Foundation's calendar, not from PostgreSQL.
public struct ExpectedRollups: Equatable, Sendable {
    public struct User: Equatable, Sendable {
        public var visits = 0
        public var first: Timestamp?
        public var last: Timestamp?
        public var joined: Timestamp?
    }

    public var daily: [String: Int] = [:]
    public var hourly: [String: Int] = [:]
    public var quarterHours: [String: Int] = [:]
    /// The visits of each member to a space in a 15-minute bucket, by `bucket space user` (RFC 3339).
    public var memberVisits: [String: Int] = [:]
    /// The visits of each member on each local day of each zone, by `zone day space` and `zone day *` (any space).
    public var memberDays: [String: [Int32: Int]] = [:]
    public var users: [Int32: User] = [:]
    public var checkins = 0
    /// Users with at least one visit, as the folds counted them in `fold_totals`.
    public var visitedUsers = 0
    public var firstCheckin: Timestamp?
    public var lastCheckin: Timestamp?

    public init() {}

    /// The rollups of `events`, of which the first with each id counts.
    public init(events: [Event], zones: [String]) throws {
        var seen = Set<UUID>()
        var calendars: [(String, Calendar)] = []
        for zone in zones {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = try #require(TimeZone(identifier: zone))
            calendars.append((zone, calendar))
        }
        for event in events where seen.insert(event.id).inserted {
            switch event.kind {
            case .userJoined:
                users[event.userID, default: User()].joined = min(
                    users[event.userID]?.joined ?? event.occurredAt, event.occurredAt)
            case .checkin:
                let space = event.spaceID ?? "default"
                let micros = event.occurredAt.microsecondsSinceEpoch
                let seconds = micros.floorDivided(by: 1_000_000).quotient
                let date = Date(timeIntervalSince1970: TimeInterval(seconds))
                for (zone, calendar) in calendars {
                    let local = calendar.dateComponents([.year, .month, .day, .hour], from: date)
                    let day = String(format: "%04d-%02d-%02d", local.year!, local.month!, local.day!)
                    daily["\(zone) \(day) \(space)", default: 0] += 1
                    hourly["\(zone) \(day) \(local.hour!) \(space)", default: 0] += 1
                    memberDays["\(zone) \(day) \(space)", default: [:]][event.userID, default: 0] += 1
                    memberDays["\(zone) \(day) *", default: [:]][event.userID, default: 0] += 1
                }
                let quarter = micros.floorDivided(by: 900_000_000).quotient * 900_000_000
                quarterHours["\(Timestamp(microsecondsSinceEpoch: quarter).rfc3339) \(space)", default: 0] += 1
                memberVisits[
                    "\(Timestamp(microsecondsSinceEpoch: quarter).rfc3339) \(space) \(event.userID)", default: 0] += 1
                var user = users[event.userID, default: User()]
                user.visits += 1
                user.first = min(user.first ?? event.occurredAt, event.occurredAt)
                user.last = max(user.last ?? event.occurredAt, event.occurredAt)
                users[event.userID] = user
                checkins += 1
                firstCheckin = min(firstCheckin ?? event.occurredAt, event.occurredAt)
                lastCheckin = max(lastCheckin ?? event.occurredAt, event.occurredAt)
            }
        }
        visitedUsers = users.values.count { $0.visits > 0 }
    }
}

/// Check-ins and joins spread over days around daylight-saving changes (New York on 2023-03-12 and 2023-11-05),
/// over three spaces, in an order of their own.
public func workload(events count: Int, users: Int32, seed: UInt64) -> [Event] {
    var random = SeededGenerator(seed: seed)
    let windows = [
        Timestamp(year: 2023, month: 3, day: 11), Timestamp(year: 2023, month: 11, day: 4),
        Timestamp(year: 2023, month: 6, day: 30),
    ]
    let spaces: [String?] = [nil, "hq", "annex.b_2"]
    var events: [Event] = []
    for index in 0..<count {
        let start = windows[index % windows.count]
        let offset = Int64.random(in: 0..<(3 * 86_400 * 1_000_000), using: &random)
        let at = Timestamp(microsecondsSinceEpoch: start.microsecondsSinceEpoch + offset)
        let user = Int32.random(in: 1...users, using: &random)
        if index % 17 == 0 {
            events.append(Event(id: UUID(), kind: .userJoined, userID: user, occurredAt: at))
        } else {
            events.append(
                Event(
                    id: UUID(), kind: .checkin, userID: user, occurredAt: at,
                    spaceID: spaces.randomElement(using: &random)!))
        }
    }
    return events.shuffled(using: &random)
}

extension PostgresConnection {
    /// The rows of `visits_local_day`: visits by `zone day space` and, for each hour with visits, by
    /// `zone day hour space`.
    public func localDays(zone: String? = nil) async throws -> (daily: [String: Int], hourly: [String: Int]) {
        var daily: [String: Int] = [:]
        var hourly: [String: Int] = [:]
        let rows = try query(
            """
            SELECT zone, day::text, space_id, visits, \(HourColumns.list) FROM visits_local_day
            WHERE $1::text IS NULL OR zone = $1
            """, [zone])
        for row in rows.rows {
            let (zone, day, space) = (try row.string(0), try row.string(1), try row.string(2))
            daily["\(zone) \(day) \(space)"] = try row.int(3)
            for hour in 0..<24 where try row.int(4 + hour) > 0 {
                hourly["\(zone) \(day) \(hour) \(space)"] = try row.int(4 + hour)
            }
        }
        return (daily, hourly)
    }
}

extension AMQPConnection {
    /// Deletes the queues and exchanges of `topology`, a test's own.
    public func delete(_ topology: Topology) throws {
        try deleteQueue(topology.queue)
        try deleteQueue(topology.deadLetterQueue)
        try deleteExchange(topology.exchange)
        try deleteExchange(topology.deadLetterExchange)
    }
}
