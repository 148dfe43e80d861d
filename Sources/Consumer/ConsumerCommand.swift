import ArgumentParser
import Basics
import ConsumerCore
import Logging
import Metrics
import Pipeline
import PostgresClient
import Prometheus

/// The `consumer` program: `run` (the default) folds events until SIGTERM, `migrate` brings the schema up to date.
/// The work is `ConsumerCore`'s; this reads the settings and turns a failure into one line and an exit status.
@main
struct ConsumerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consumer",
        abstract: "Folds check-in events from RabbitMQ into the PostgreSQL rollups.",
        discussion: "Configured by environment variables: see the README.",
        subcommands: [Run.self, Migrate.self, ForgetMember.self],
        defaultSubcommand: Run.self
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Declares the queues and folds events until SIGTERM, then finishes its batch and exits 0."
    )

    func run() async throws {
        let settings = Program.configuration { () throws(ConfigurationError) in
            try ConsumerSettings.fromEnvironment(.process)
        }
        Program.bootstrapLogging(level: settings.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ConsumerApp.metricsFactory(registry: registry))
        let logger = Logger(label: "consumer")
        do {
            try await ConsumerApp.buildServiceGroup(settings: settings, registry: registry, logger: logger).run()
        } catch {
            Program.exit(after: error, logger: logger, "The consumer stopped")
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Creates or upgrades the database schema and the zones of REPORT_TIMEZONES.",
        discussion: "Idempotent, and safe when several replicas run it at once."
    )

    func run() async throws {
        let settings = Program.configuration { () throws(ConfigurationError) in
            try MigrationSettings.fromEnvironment(.process)
        }
        Program.bootstrapLogging(level: settings.logLevel)
        let logger = Logger(label: "consumer.migrate")
        do {
            let migrator = Migrator(
                schema: settings.database.schema, zones: settings.zones.folded, readerRole: settings.readerRole)
            let report = try await PostgresConnection.withConnection(settings.database, logger: logger) {
                try await migrator.run(on: $0, logger: logger)
            }
            var summary = "schema \(settings.database.schema) at version \(report.version); zones "
            summary += settings.zones.folded.joined(separator: ", ")
            if !report.addedZones.isEmpty { summary += "; filled \(report.addedZones.joined(separator: ", "))" }
            if !report.removedZones.isEmpty { summary += "; dropped \(report.removedZones.joined(separator: ", "))" }
            print(summary)
        } catch {
            Program.exit(after: error, logger: logger, "Migration failed")
        }
    }
}

struct ForgetMember: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget-member",
        abstract: "Erases what identifies a member in the rollups; the day and hour counts stay as they were.",
        discussion:
            "Deletes the member's user_visits line and keeps their members' rows under a pseudonym, in one transaction."
            + " Events of the member still queued are folded afterwards: run it again once the queue drained."
    )

    @Option(help: "The member's user id.") var userId: Int32

    func validate() throws {
        guard userId > 0 else { throw ValidationError("--user-id must be from 1 to \(Int32.max)") }
    }

    func run() async throws {
        let settings = Program.configuration { () throws(ConfigurationError) in
            try MigrationSettings.fromEnvironment(.process)
        }
        Program.bootstrapLogging(level: settings.logLevel)
        let logger = Logger(label: "consumer.forget-member")
        let report = await Program.run("Forgetting the member failed", logger: logger) {
            try await PostgresConnection.withConnection(settings.database, logger: logger) {
                try await MemberErasure(schema: settings.database.schema).forget(userId, on: $0)
            }
        }
        if report.foundAnything {
            print(
                "forgot member \(userId): \(report.userActivity) user_visits line deleted; \(report.memberRows) members' "
                    + "rows, \(report.waitingRows) waiting for compaction and "
                    + (report.numbered ? "their number" : "no number")
                    + " kept under a pseudonym; visits per day and hour unchanged")
        } else {
            print("member \(userId): the rollups hold nothing of them")
        }
    }
}
