import ArgumentParser
import Hummingbird
import Logging
import Metrics
import Prometheus
import ReportAPICore
import Shared

@main
struct ReportAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-api",
        abstract: "Serves the read-only report API over the rollups.",
        discussion:
            "Configured by environment variables (APP_PORT, DB_*, DATABASE_URL, REPORT_TIMEZONE): see the README."
    )

    func run() async throws {
        let settings = Program.configuration { () throws(ConfigurationError) in
            try ReportAPISettings.fromEnvironment(.process)
        }
        Program.bootstrapLogging(level: settings.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "report-api")
        do {
            try await ReportAPIApp.buildApplication(settings: settings, registry: registry, logger: logger)
                .runService()
        } catch {
            Program.exit(after: error, logger: logger, "The report API stopped")
        }
    }
}
