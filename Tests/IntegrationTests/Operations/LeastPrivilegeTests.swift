import ConsumerCore
import Foundation
import IntegrationSupport
import PostgresClient
import Testing

/// The roles the shipped deployments create: the k8s migration Job's first container runs `roles.sql` as the
/// database's superuser, and nothing else does; the consumer's role owns the database without being a superuser, and
/// after `consumer migrate` the report API's role can read the rollups and write nothing.
@Suite
struct LeastPrivilegeTests {
    /// The `roles.sql` of the migration Job's ConfigMap, as shipped.
    static func rolesSQL() throws -> String {
        let path = TestServers.repository.appendingPathComponent("k8s/10-migrate-job.yaml").path
        let manifest = try String(contentsOfFile: path, encoding: .utf8)
        let lines = manifest.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.contains("roles.sql: |") })
        return lines[(start + 1)...].prefix { $0.hasPrefix("    ") }.map { String($0.dropFirst(4)) }
            .joined(separator: "\n")
    }

    /// Runs `psql` as the server's superuser on `database` with `variables`; returns its output.
    static func superuserPSQL(_ database: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        process.arguments =
            ["-u", "postgres", "--", "psql", "-qtA", "-v", "ON_ERROR_STOP=1", "-d", database] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "psql failed: \(arguments)")
        return text
    }

    @Test func theJobsRolesOwnAndReadWithoutBeingSuperusers() async throws {
        let name = TestServers.uniqueName("roles")
        let (owner, reader) = (name + "_owner", name + "_reader")
        _ = try Self.superuserPSQL("postgres", ["-c", "CREATE DATABASE \(name)"])
        defer {
            _ = try? Self.superuserPSQL(
                "postgres",
                [
                    "-c", "DROP DATABASE \(name) WITH (FORCE)", "-c", "DROP ROLE IF EXISTS \(owner)", "-c",
                    "DROP ROLE IF EXISTS \(reader)",
                ])
        }
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).sql")
        try Self.rolesSQL().write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: script.path)
        let variables = [
            "-v", "owner=\(owner)", "-v", "owner_password=o-secret", "-v", "reader=\(reader)", "-v",
            "reader_password=r-secret", "-f", script.path,
        ]
        // Twice: the Job runs before every rollout.
        _ = try Self.superuserPSQL(name, variables)
        _ = try Self.superuserPSQL(name, variables)
        #expect(
            try Self.superuserPSQL(
                name,
                [
                    "-c",
                    "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname LIKE '\(name)%' ORDER BY 1;"
                        + " SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
                ]) == "\(owner)|f|f\n\(reader)|f|f\n\(owner)\n")

        var ownerDatabase = try TestServers.database(schema: "rollups")
        (ownerDatabase.database, ownerDatabase.user, ownerDatabase.password) = (name, owner, "o-secret")
        _ = try await Migrator(schema: "rollups", zones: ["UTC"], readerRole: reader).run(
            on: PostgresConnection.connect(ownerDatabase, logger: TestServers.logger), logger: TestServers.logger)
        var readerDatabase = ownerDatabase
        (readerDatabase.user, readerDatabase.password) = (reader, "r-secret")
        let readerConnection = try await PostgresConnection.connect(readerDatabase, logger: TestServers.logger)
        #expect(try await readerConnection.query("SELECT count(*) FROM fold_totals")[0].int(0) == 0)
        await #expect {
            try await readerConnection.query("INSERT INTO report_zones (zone) VALUES ('Europe/Paris')")
        } throws: { ($0 as? PostgresError)?.sqlState == "42501" }

    }
}
