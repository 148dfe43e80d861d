import Basics
import Logging
import Pipeline
import PostgresClient

/// The settings of `consumer migrate`.
public struct MigrationSettings: Sendable {
    public var database: PostgresConfiguration
    public var zones: ReportZones
    /// `DB_READER_ROLE`: optional role granted USAGE on the schema and SELECT on its tables.
    public var readerRole: String?
    public var logLevel: Logger.Level

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError)
        -> MigrationSettings
    {
        let readerRole = environment["DB_READER_ROLE"]
        if let readerRole, !PostgresConfiguration.isPlainIdentifier(readerRole) {
            throw ConfigurationError(variable: "DB_READER_ROLE", problem: "must be a lower-case SQL identifier")
        }
        return MigrationSettings(
            database: try PostgresConfiguration.fromEnvironment(environment, applicationName: "consumer-migrate"),
            zones: try ReportZones.fromEnvironment(environment),
            readerRole: readerRole,
            logLevel: try Logger.Level.fromEnvironment(environment)
        )
    }
}
