import ArgumentParser
import Basics
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Pipeline
import Prometheus
import ReportAPICore

/// The `report-api` program: reads its settings, then serves `ReportAPIApp` until SIGTERM; a failure to start is one
/// line and exit status 1.
@main
struct ReportAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-api",
        abstract: "Serves the read-only report API over the rollups.",
        discussion:
            "Configured by environment variables (APP_PORT, DB_*, DATABASE_URL, REPORT_TIMEZONE): see the README."
    )

    func run() async throws {
        // Request handlers then run on the event loop that reads their connection, instead of hopping to Swift's
        // cooperative pool and back for every request. Nothing in this program blocks a thread of that pool: the
        // libpq calls run on the database connections' own threads.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let settings = Program.configuration { () throws(ConfigurationError) in
            try ReportAPISettings.fromEnvironment(.process)
        }
        Program.bootstrapLogging(level: settings.logLevel)
        let registry = PrometheusCollectorRegistry()
        let logger = Logger(label: "report-api")
        do {
            try await ReportAPIApp.buildServiceGroup(settings: settings, registry: registry, logger: logger).run()
        } catch {
            Program.exit(after: error, logger: logger, "The report API stopped")
        }
    }
}
