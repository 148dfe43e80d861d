import Foundation
import Glibc
import Testing

/// The programs built beside the test bundle, run as operators run them.
public enum Programs {
    /// Runs a shell command as the tests' user (root, as the servers' tools need) and requires it to succeed.
    /// `system` rather than `Process`: a server restarted by the command keeps the test's standard error open,
    /// and Foundation's `Process` then never reports the shell's exit.
    public static func shell(_ command: String) {
        #expect(system(command + " >/dev/null 2>&1") == 0, "\(command) failed")
    }

    /// The executable `name` built beside the test bundle.
    public static func executable(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Ends `process` as an orchestrator does, with SIGTERM, and waits for it to exit. A process that has exited is
    /// not signalled again: its pid may belong to another process by now.
    public static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
    }

    /// Starts `consumer run` in the harness's environment, with `changes` made to it.
    public static func startConsumer(
        _ harness: ConsumerHarness, changing changes: [String: String] = [:], standardError: Any? = nil
    ) throws -> Process {
        let process = Process()
        process.executableURL = executable("consumer")
        process.arguments = ["run"]
        process.environment = try harness.environment().merging(changes) { _, changed in changed }
        if let standardError { process.standardError = standardError }
        try process.run()
        return process
    }

    /// Runs an executable built beside the test bundle; returns its exit status, standard output and standard error.
    public static func run(_ name: String, _ arguments: [String], environment changes: [String: String] = [:]) throws
        -> (status: Int32, output: String, errors: String)
    {
        let process = Process()
        process.executableURL = executable(name)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(changes) { _, changed in changed }
        let (output, errors) = (Pipe(), Pipe())
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, out, err)
    }
}

/// A consumer process of `harness`, its metrics port, and what it logs.
public struct RunningConsumer {
    public let process: Process
    public let port: Int
    public let log: Pipe

    public init(_ harness: ConsumerHarness) throws {
        port = TestServers.freePort()
        log = Pipe()
        process = try Programs.startConsumer(
            harness, changing: ["METRICS_PORT": "\(port)", "LOG_LEVEL": "notice"], standardError: log)
    }

    /// The readiness probe's answer: its status line and body.
    public func readiness() async throws -> String {
        let answer = try await HTTPGet.text(port: port, path: "/readiness_check")
        let parts = answer.components(separatedBy: "\r\n\r\n")
        return parts[0].components(separatedBy: "\r\n")[0] + " " + parts.dropFirst().joined()
    }

    /// `coworking_consumer_waiting_for_database` for `reason`.
    public func waiting(_ reason: String) async throws -> Double? {
        let metrics = try await HTTPGet.text(port: port, path: "/metrics")
        let name = #"coworking_consumer_waiting_for_database{reason="\#(reason)"} "#
        return metrics.split(separator: "\n").first { $0.hasPrefix(name) }.flatMap {
            Double($0.dropFirst(name.count))
        }
    }

    /// Ends the consumer with SIGTERM; its log's lines.
    public func stop() -> [String] {
        Programs.stop(process)
        return String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").map(String.init)
    }
}
