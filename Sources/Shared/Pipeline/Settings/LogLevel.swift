import Basics
import Logging

extension Logger.Level {
    /// `LOG_LEVEL`: one of `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`; default `info`.
    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError) -> Logger.Level {
        guard let text = environment["LOG_LEVEL"] else { return .info }
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigurationError(variable: "LOG_LEVEL", problem: "must be one of \(names), got \(text.quoted())")
        }
        return level
    }
}
