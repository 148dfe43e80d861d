import ArgumentParser
import ConsumerCore
import Logging
import Shared

@main
struct ConsumerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consumer",
        abstract: "Folds check-in events from RabbitMQ into the PostgreSQL rollups.",
        discussion: "Configured by environment variables: see the README.",
        subcommands: [Migrate.self]
    )
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
            let connection = try await PostgresConnection.connect(settings.database, logger: logger)
            let migrator = Migrator(
                schema: settings.database.schema, zones: settings.zones.folded, readerRole: settings.readerRole)
            let report = try await migrator.run(on: connection, logger: logger)
            print(
                "schema \(settings.database.schema) at version \(report.version); zones \(settings.zones.folded.joined(separator: ", "))"
                    + (report.addedZones.isEmpty ? "" : "; filled \(report.addedZones.joined(separator: ", "))")
                    + (report.removedZones.isEmpty ? "" : "; dropped \(report.removedZones.joined(separator: ", "))"))
        } catch {
            Program.exit(after: error, logger: logger, "Migration failed")
        }
    }
}
