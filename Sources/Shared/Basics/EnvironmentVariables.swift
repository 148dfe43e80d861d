import Foundation

/// A setting that is missing or malformed; its `description` is the one line a program prints before it stops.
///
/// The message names the variable and what it must be, never the value of a secret.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The environment variable at fault.
    public var variable: String
    /// What is wrong with it, as a sentence fragment ("must be an integer from 1 to 65535").
    public var problem: String

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { "configuration error: \(variable) \(problem)" }
}

/// A read-only view of the process environment, so that parsing configuration is a pure function of a dictionary.
public struct EnvironmentVariables: Sendable {
    public var values: [String: String]

    public init(_ values: [String: String]) {
        self.values = values
    }

    /// The environment of this process.
    public static var process: EnvironmentVariables { EnvironmentVariables(ProcessInfo.processInfo.environment) }

    /// The value of `name`, with an empty value treated as absent (as `VAR= program` means "unset" to most users).
    public subscript(name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    /// The value of `name`, or an error naming it when it is absent.
    public func required(_ name: String) throws(ConfigurationError) -> String {
        guard let value = self[name] else { throw ConfigurationError(variable: name, problem: "is required") }
        return value
    }

    /// An integer in `range`, or `defaultValue` when the variable is absent.
    public func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>)
        throws(ConfigurationError)
        -> Int
    {
        guard let text = self[name] else { return defaultValue }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw ConfigurationError(
                variable: name,
                problem: "must be an integer from \(range.lowerBound) to \(range.upperBound), got \(text.quoted())"
            )
        }
        return value
    }

    /// A non-empty name such as an exchange or queue name, or `defaultValue` when the variable is absent.
    public func name(_ name: String, default defaultValue: String) throws(ConfigurationError) -> String {
        guard let value = self[name] else { return defaultValue }
        guard value.utf8.count <= 255, !value.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw ConfigurationError(variable: name, problem: "must be at most 255 bytes without spaces")
        }
        return value
    }
}
