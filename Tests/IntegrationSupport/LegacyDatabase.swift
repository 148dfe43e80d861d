import Foundation
import PostgresClient
import Testing

/// Databases of the legacy Flask service, each a test's own, holding the seed data.
public enum LegacyDatabase {
    /// A database of the legacy Flask service of the test's own, holding the seed data: its URL, with the password.
    private static func make() async throws -> (url: String, name: String) {
        let name = TestServers.uniqueName("legacy")
        let owner = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        try await owner.execute("CREATE DATABASE \(name)")
        let base = try TestServers.variable("DATABASE_URL")
        let url = String(base[..<(base.lastIndex(of: "/") ?? base.endIndex)]) + "/" + name
        let legacy = try await PostgresConnection.connect(
            PostgresConfiguration(url: url, variable: "DATABASE_URL"), logger: TestServers.logger)
        let seed = TestServers.repository.appendingPathComponent("data/coworking-seed")
        for file in ["1_create_tables.sql", "2_seed_users.sql", "3_seed_tokens.sql"] {
            try await legacy.execute(try String(contentsOf: seed.appendingPathComponent(file), encoding: .utf8))
        }
        return (url, name)
    }

    /// Runs `body` with the URL of a legacy database of its own (`make`), dropped afterwards.
    public static func with<T>(_ body: (String) async throws -> T) async throws -> T {
        let (url, name) = try await make()
        func drop() async throws {
            try await PostgresConnection.withConnection(TestServers.database(), logger: TestServers.logger) {
                try await $0.execute("DROP DATABASE \(name) WITH (FORCE)")
            }
        }
        return try await cleaningUp(drop) { try await body(url) }
    }
}
