import AMQPClient
import ArgumentParser
import Basics
import Foundation
import Logging
import Pipeline
import PostgresClient
import ProducerCore
import Synchronization
import UnixSignals

/// The `producer` program: one subcommand for each way events reach the broker (one event, a file, the legacy
/// database, a synthetic load) and one for the dead-letter queue. The work is `ProducerCore`'s.
@main
struct ProducerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "producer",
        abstract: "Publishes check-in events to RabbitMQ with publisher confirms.",
        discussion: """
            Configured by AMQP_URL, EXCHANGE and LOG_LEVEL. Every command ends with one line of how many events were \
            published and confirmed, and exits non-zero when any was not confirmed.
            """,
        subcommands: [Publish.self, Replay.self, Backfill.self, Parity.self, Load.self, DeadLetters.self]
    )
}

/// What every command needs: the settings, logging, a publisher, and the closing line and exit status.
struct ProducerContext {
    let publisher: EventPublisher
    let logger: Logger
    let rules: EventRules

    init() {
        let (amqp, exchange, rules, level) = Program.configuration { () throws(ConfigurationError) in
            let environment = EnvironmentVariables.process
            return (
                try AMQPConfiguration.fromEnvironment(environment), try Topology.fromEnvironment(environment).exchange,
                try EventRules.fromEnvironment(environment), try Logger.Level.fromEnvironment(environment)
            )
        }
        Program.bootstrapLogging(level: level)
        logger = Logger(label: "producer")
        publisher = EventPublisher(configuration: amqp, exchange: exchange, logger: logger)
        self.rules = rules
    }

    /// Closes the connection and prints the closing line; throws exit status 1 when anything was not confirmed (or
    /// refused).
    func finish(_ counts: EventPublisher.Counts, refused: Int = 0) async throws {
        await publisher.close()
        var line = "published \(counts.published) events, \(counts.confirmed) confirmed"
        if refused > 0 { line += ", \(refused) refused" }
        print(line)
        if counts.confirmed < counts.published || refused > 0 { throw ExitCode.failure }
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publishes one event and waits for its confirm.")

    @Option(help: "The member's user id, 1 to 2147483647.") var userID: Int32
    @Option(help: "checkin or user_joined.") var type = "checkin"
    @Option(help: "When it happened, RFC 3339 (default: now).") var at: String?
    @Option(help: "The space of a check-in (default: default).") var space: String?
    @Option(help: "The event id, a UUID (default: a new random one).") var eventID: String?

    func run() async throws {
        let context = ProducerContext()
        guard let kind = EventKind(rawValue: type) else {
            throw ValidationError("--type must be checkin or user_joined")
        }
        let occurredAt: Timestamp
        do {
            occurredAt = try at.map { try Timestamp(rfc3339: $0) } ?? .now
        } catch {
            throw ValidationError("--at must be an RFC 3339 timestamp with an offset, such as 2023-02-08T08:29:58Z")
        }
        guard let id = eventID.map({ UUID(text: $0) }) ?? UUID() else {
            throw ValidationError("--event-id must be a UUID")
        }
        let event = Event(id: id, kind: kind, userID: userID, occurredAt: occurredAt, spaceID: space)
        do {
            // The consumer's own rules, so that nothing is published that it would dead-letter.
            _ = try EventDecoder(rules: context.rules).decode(event.jsonBody, now: .now)
        } catch {
            throw ValidationError(error.description)
        }
        try await context.finish(await context.publisher.publish([context.publisher.message(for: event)]))
    }
}

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publishes the events of a JSON Lines file (or standard input), one a line.",
        discussion: "A line that is not a valid event is refused with its line number, unless --raw.")

    @Argument(help: "The file; standard input when absent.") var file: String?
    @Flag(help: "Send every line as it is, valid or not (to test dead-lettering).") var raw = false

    func run() async throws {
        let context = ProducerContext()
        guard let handle = file.map({ FileHandle(forReadingAtPath: $0) }) ?? FileHandle.standardInput else {
            throw ValidationError("cannot read \(file ?? "")")
        }
        let decoder = EventDecoder(rules: context.rules)
        let progress = ProgressLine()
        var counts = EventPublisher.Counts()
        var refused = 0
        var batch: [AMQPOutgoingMessage] = []
        var lineNumber = 0
        func flush() async {
            counts += await context.publisher.publish(batch)
            batch.removeAll(keepingCapacity: true)
            progress.update(count: counts.published)
        }
        for try await line in LineReader(handle) {
            lineNumber += 1
            switch ReplayLine(line, lineNumber: lineNumber, raw: raw, decoder: decoder, now: .now) {
            case .message(let body, let routingKey, let messageID):
                batch.append(context.publisher.message(body: body, routingKey: routingKey, messageID: messageID))
                if batch.count == 1_000 { await flush() }
            case .refused(let number, let reason):
                refused += 1
                FileHandle.standardError.write(Data("line \(number): \(reason)\n".utf8))
            case .blank:
                break
            }
        }
        await flush()
        progress.finish()
        try await context.finish(counts, refused: refused)
    }
}

struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publishes the history of the legacy Flask database: users as user_joined, used tokens as checkin.",
        discussion: """
            Event ids are UUIDv5 of token:<id> and user:<id>, so running it twice counts everything once. With \
            --follow, it then keeps publishing new users and tokens as they are used, until SIGTERM.
            """)

    @OptionGroup var legacyDatabase: LegacyDatabase
    @Option(help: "The column that dates a check-in: created_at (as the Flask reports did) or used_at.")
    var timeColumn = "created_at"
    @Option(help: "The zone the legacy naive timestamps were written in.") var sourceTimezone = "UTC"
    @Flag(help: "After the history, keep publishing what changes in the legacy database, until SIGTERM.")
    var follow = false
    @Option(
        help: """
            A file where --follow keeps its place: after a restart it goes on from there instead of publishing the \
            history again.
            """)
    var checkpoint: String?
    @Option(help: "How long after it was issued a token may still be used, and a change still commit, in hours.")
    var followWindowHours = 24
    @Option(help: "Milliseconds between two reads of the legacy database when following.")
    var pollIntervalMs = 1_000

    func validate() throws {
        guard LegacyBackfill.TimeColumn(rawValue: timeColumn) != nil else {
            throw ValidationError("--time-column must be created_at or used_at")
        }
        guard ReportZones.isKnown(sourceTimezone) else {
            throw ValidationError("--source-timezone must be an IANA time zone such as UTC or Europe/Berlin")
        }
        guard (1...8_760).contains(followWindowHours) else {
            throw ValidationError("--follow-window-hours must be from 1 to 8760")
        }
        guard (100...3_600_000).contains(pollIntervalMs) else {
            throw ValidationError("--poll-interval-ms must be from 100 to 3600000")
        }
        if checkpoint != nil, !follow { throw ValidationError("--checkpoint needs --follow") }
    }

    func run() async throws {
        let context = ProducerContext()
        let backfill = LegacyBackfill(
            legacy: try legacyDatabase.configuration(), timeColumn: LegacyBackfill.TimeColumn(rawValue: timeColumn)!,
            sourceTimeZone: sourceTimezone, followWindow: .seconds(followWindowHours * 3_600))
        let counts = Tally()
        // SIGTERM or SIGINT stops the work in hand; what was published is confirmed or counted as not.
        let stopped = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let progress = ProgressLine()
                    defer { progress.finish() }
                    try await publish(backfill, context: context, counts: counts, progress: progress)
                }
                group.addTask {
                    for await _ in stopped { return }
                }
                try await group.next()
                group.cancelAll()
            }
        } catch is CancellationError {
        } catch {
            await context.publisher.close()
            Program.exit(after: error, logger: context.logger, "Reading the legacy database failed")
        }
        try await context.finish(counts.total)
    }

    /// The history, unless a checkpoint says it was published, then what changes, when following.
    private func publish(
        _ backfill: LegacyBackfill, context: ProducerContext, counts: Tally, progress: ProgressLine
    ) async throws {
        func published(_ events: [Event]) async -> Bool {
            let outcome = await context.publisher.publish(events.map(context.publisher.message(for:)))
            progress.update(count: counts.add(outcome))
            return outcome.confirmed == outcome.published
        }
        var start = try checkpoint.flatMap { try LegacyCheckpoint.read(from: $0) }
        if start == nil {
            let first = try await backfill.events(logger: context.logger, total: { progress.total = $0 }) {
                _ = await published($0)
            }
            guard follow else { return }
            try checkpoint.map { try first.write(to: $0) }
            start = first
        }
        guard let start else { return }
        progress.finish()
        context.logger.info("Following the legacy database")
        try await LegacyFollower(backfill: backfill, interval: .milliseconds(pollIntervalMs)).follow(
            from: start, logger: context.logger, publish: published(_:),
            saved: { saved in try checkpoint.map { try saved.write(to: $0) } })
    }
}

struct Parity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compares the report API with the Flask service's SQL over the legacy database, day by day.",
        discussion: """
            Days are daily_usage as Flask computed it (used tokens by the day of their created_at, or used_at); \
            members, their visits (used tokens) over all time. Prints the days and members that differ, or one line \
            saying that all agree, and exits 1 when any differs. The API's token comes from API_TOKEN or the file \
            API_TOKEN_FILE names.
            """)

    @OptionGroup var legacyDatabase: LegacyDatabase
    @Option(help: "The report API, http://host:port.") var api: String
    @Option(help: "The first day compared, YYYY-MM-DD (default: the first with data).") var from: String?
    @Option(help: "The last day compared, YYYY-MM-DD (default: yesterday in --tz, so that today's lag is not one).")
    var to: String?
    @Option(help: "The zone of the days (default: --source-timezone).") var tz: String?
    @Option(help: "The column that dates a check-in, as the backfill used: created_at or used_at.")
    var timeColumn = "created_at"
    @Option(help: "The zone the legacy naive timestamps were written in.") var sourceTimezone = "UTC"

    func validate() throws {
        guard LegacyBackfill.TimeColumn(rawValue: timeColumn) != nil else {
            throw ValidationError("--time-column must be created_at or used_at")
        }
        for (name, zone) in [("--source-timezone", sourceTimezone), ("--tz", tz ?? sourceTimezone)] {
            guard ReportZones.isKnown(zone) else { throw ValidationError("\(name) must be an IANA time zone") }
        }
        for (name, day) in [("--from", from), ("--to", to)] {
            if let day, LocalDate(day) == nil { throw ValidationError("\(name) must be a date, YYYY-MM-DD") }
        }
        guard ReportAPIClient(url: api, token: nil) != nil else {
            throw ValidationError("--api must be http://host or http://host:port")
        }
    }

    func run() async throws {
        let environment = EnvironmentVariables.process
        let level = Program.configuration { () throws(ConfigurationError) in
            try Logger.Level.fromEnvironment(environment)
        }
        Program.bootstrapLogging(level: level)
        let logger = Logger(label: "producer.parity")
        let zone = tz ?? sourceTimezone
        let client = ReportAPIClient(url: api, token: try Self.token(environment))!
        let parity = LegacyParity(
            legacy: LegacyBackfill(
                legacy: try legacyDatabase.configuration(),
                timeColumn: LegacyBackfill.TimeColumn(rawValue: timeColumn)!, sourceTimeZone: sourceTimezone),
            api: client)
        let lastDay = to.flatMap { LocalDate($0) } ?? Self.yesterday(in: zone)
        let report = await Program.run("The comparison failed", logger: logger) {
            try await parity.compare(from: from.flatMap { LocalDate($0) }, to: lastDay, zone: zone, logger: logger)
        }
        guard !report.agrees else {
            print(
                "all \(report.days) days agree (\(report.checkins) check-ins, to \(lastDay) in \(zone)), and the visits of "
                    + "\(report.members) members")
            return
        }
        if !report.differentDays.isEmpty {
            print("day\tlegacy\tpipeline")
            for day in report.differentDays { print("\(day.key)\t\(day.legacy)\t\(day.pipeline)") }
        }
        if !report.differentMembers.isEmpty {
            print("member\tlegacy\tpipeline")
            for member in report.differentMembers.prefix(50) {
                print("\(member.key)\t\(member.legacy)\t\(member.pipeline)")
            }
        }
        print(
            "\(report.differentDays.count) of \(report.days) days and \(report.differentMembers.count) of "
                + "\(report.members) members differ")
        throw ExitCode.failure
    }

    /// The API's bearer token: `API_TOKEN`, else the file `API_TOKEN_FILE` names, else none.
    static func token(_ environment: EnvironmentVariables) throws -> String? {
        if let token = environment["API_TOKEN"] { return token }
        guard let path = environment["API_TOKEN_FILE"] else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("API_TOKEN_FILE names no readable file \(path.quoted())")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The day before today in `zone`.
    static func yesterday(in zone: String) -> LocalDate {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: zone) ?? .gmt
        let yesterday = calendar.date(byAdding: .day, value: -1, to: calendar.startOfDay(for: Date())) ?? Date()
        let day = calendar.dateComponents([.year, .month, .day], from: yesterday)
        return LocalDate(String(format: "%04d-%02d-%02d", day.year ?? 1970, day.month ?? 1, day.day ?? 1))!
    }
}

/// The events a command published so far, shared by its work and the line that ends it.
final class Tally: Sendable {
    private let counts = Mutex(EventPublisher.Counts())

    /// Adds `outcome`; returns the events published so far.
    func add(_ outcome: EventPublisher.Counts) -> Int {
        counts.withLock {
            $0 += outcome
            return $0.published
        }
    }

    var total: EventPublisher.Counts { counts.withLock { $0 } }
}

/// The legacy Flask database: from `--legacy-url`, else `LEGACY_DATABASE_URL`, else the file `LEGACY_DATABASE_URL_FILE`
/// names (a mounted secret). A URL with a password belongs in the environment or the file: any user of the machine
/// can read a process's arguments.
struct LegacyDatabase: ParsableArguments {
    @Option(
        help: """
            The legacy database, postgresql://user:password@host:5432/database; prefer LEGACY_DATABASE_URL or \
            LEGACY_DATABASE_URL_FILE, which keep the password out of the process's arguments.
            """)
    var legacyURL: String?

    func configuration(_ environment: EnvironmentVariables = .process) throws -> PostgresConfiguration {
        let (url, source): (String, String)
        if let legacyURL {
            (url, source) = (legacyURL, "--legacy-url")
        } else if let fromEnvironment = environment["LEGACY_DATABASE_URL"] {
            (url, source) = (fromEnvironment, "LEGACY_DATABASE_URL")
        } else if let path = environment["LEGACY_DATABASE_URL_FILE"] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("LEGACY_DATABASE_URL_FILE names no readable file \(path.quoted())")
            }
            (url, source) = (text.trimmingCharacters(in: .whitespacesAndNewlines), "LEGACY_DATABASE_URL_FILE")
        } else {
            throw ValidationError(
                "the legacy database is needed: set LEGACY_DATABASE_URL (or LEGACY_DATABASE_URL_FILE)")
        }
        do {
            return try PostgresConfiguration(url: url, variable: source)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publishes synthetic check-ins at a steady rate, for benchmarks and demos.")

    @Option(help: "Check-ins per second.") var rate: Double
    @Option(help: "Seconds over which the check-ins fall due.") var duration: Double
    @Option(help: "Distinct users.") var users: Int32 = 1_000
    @Option(help: "Spread the check-ins over this many past days (0: now).") var days = 0

    func run() async throws {
        guard rate > 0, duration > 0, users > 0, days >= 0 else {
            throw ValidationError("--rate, --duration and --users must be positive, --days at least 0")
        }
        let context = ProducerContext()
        let load = SyntheticLoad(
            rate: rate, duration: .milliseconds(Int64(duration * 1_000)), users: users, days: days)
        let progress = ProgressLine(total: load.total)
        let started = ContinuousClock.now
        let counts = try await load.run(context.publisher) { progress.update(count: $0) }
        progress.finish()
        let seconds = (ContinuousClock.now - started).seconds
        print(
            String(
                format: "achieved %.0f confirmed events/s of the %.0f asked", Double(counts.confirmed) / seconds, rate))
        try await context.finish(counts)
    }
}

struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "Summarizes coworking.dead by reason, publishes chosen dead letters again, or removes them.",
        discussion: """
            Configured by AMQP_URL, EXCHANGE and DEAD_LETTER_EXCHANGE. A dead letter is removed only after what was             asked of it is done; those not chosen stay in the queue.
            """,
        subcommands: [List.self, Requeue.self, Purge.self])

    /// The settings these commands need, and a logger.
    static func queue() -> DeadLetterQueue {
        let (amqp, topology, level) = Program.configuration { () throws(ConfigurationError) in
            let environment = EnvironmentVariables.process
            return (
                try AMQPConfiguration.fromEnvironment(environment), try Topology.fromEnvironment(environment),
                try Logger.Level.fromEnvironment(environment)
            )
        }
        Program.bootstrapLogging(level: level)
        return DeadLetterQueue(configuration: amqp, topology: topology, logger: Logger(label: "producer"))
    }

    struct Filter: ParsableArguments {
        @Option(help: "Only the dead letters whose reason contains this text.") var reason: String?
        @Flag(help: "Only those whose reason is exactly --reason.") var exact = false
        @Option(help: "At most this many.") var limit: Int?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
            if exact, reason == nil { throw ValidationError("--exact needs --reason") }
        }

        var choice: DeadLetterQueue.Choice { DeadLetterQueue.Choice(reason: reason, exact: exact, limit: limit) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts the dead letters by reason, with the oldest, the newest and an example; removes none.")

        func run() async throws {
            let queue = DeadLetters.queue()
            let summaries = await Program.run("Reading the dead letters failed", logger: queue.logger) {
                try await queue.summarize()
            }
            // Reasons and bodies come from publishers: their control characters are escaped, so that a dead letter
            // cannot move the operator's cursor or rewrite the lines before it.
            for summary in summaries {
                let span = [summary.oldest, summary.newest].map { $0?.rfc3339 ?? "unknown" }
                print("\(summary.count)\t\(summary.reason.escapingControlCharacters)")
                print(
                    "\tpublished from \(span[0]) to \(span[1]); for example: \(summary.example.escapingControlCharacters)"
                )
                if summary.mostRequeues > 0 {
                    print("\trequeued and back again, up to \(summary.mostRequeues) times")
                }
            }
            print("\(summaries.reduce(0) { $0 + $1.count }) dead letters, \(summaries.count) reasons")
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publishes the chosen dead letters to the events exchange again and removes each once confirmed.")

        @OptionGroup var filter: Filter

        func run() async throws {
            let queue = DeadLetters.queue()
            let (matched, requeued) = await Program.run("Requeueing dead letters failed", logger: queue.logger) {
                try await queue.requeue(filter.choice)
            }
            print("published \(matched) events, \(requeued) confirmed")
            if requeued < matched { throw ExitCode.failure }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Removes the chosen dead letters for good.")

        @OptionGroup var filter: Filter
        @Flag(help: "Confirms the removal: without it, nothing is removed.") var yes = false

        func run() async throws {
            guard yes else {
                throw ValidationError(
                    "purge removes dead letters for good: add --yes to confirm (list shows them first)")
            }
            let queue = DeadLetters.queue()
            let removed = await Program.run("Purging dead letters failed", logger: queue.logger) {
                try await queue.purge(filter.choice)
            }
            print("removed \(removed) dead letters")
        }
    }
}
