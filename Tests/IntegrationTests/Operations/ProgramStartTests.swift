import Foundation
import IntegrationSupport
import Testing

/// The built programs run as operators run them: a bad setting or a failure to start is one line on standard error
/// and an exit status, never the HTTP framework's own lines about the same failure.
@Suite
struct ProgramStartTests {

    @Test(
        "every program that reads REPORT_TIMEZONES stops on an unknown zone with one line and status 2",
        arguments: [("consumer", ["run"]), ("consumer", ["migrate"]), ("report-api", [])])
    func anUnknownZoneStopsTheProgram(_ program: String, _ arguments: [String]) throws {
        let result = try Programs.run(program, arguments, environment: ["REPORT_TIMEZONES": "UTC,Mars/Olympus_Mons"])
        #expect(result.status == 2)
        #expect(
            result.errors == "configuration error: REPORT_TIMEZONES names an unknown time zone \"Mars/Olympus_Mons\"\n")
    }

    @Test(
        "a port in use stops the program with one line and status 1",
        arguments: [("consumer", ["run"], "METRICS_PORT"), ("report-api", [], "APP_PORT")])
    func aPortInUseIsOneLine(_ program: String, _ arguments: [String], _ portVariable: String) throws {
        let listener = try TCPListener()
        let port = listener.port

        // At level error, the framework's lines about a failed start would show, were they let through. The
        // database is unreachable, so that the consumer waits for it rather than stop for another reason first.
        let result = try Programs.run(
            program, arguments,
            environment: [
                portVariable: "\(port)", "BIND_ADDRESS": "127.0.0.1", "LOG_LEVEL": "error",
                "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            ])
        #expect(result.status == 1)
        let lines = result.errors.split(separator: "\n")
        #expect(lines.count == 1, "\(result.errors)")
        #expect(lines.first?.contains("critical") == true)
        #expect(lines.first?.contains("Address already in use") == true)
    }
}
