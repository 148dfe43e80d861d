import Basics
import Foundation
import IntegrationSupport
import Logging
import PostgresClient
import Synchronization
import Testing

@Suite("PostgreSQL layer against PostgreSQL")
struct PostgresConnectionTests {
    /// A connection whose search path is a new schema, dropped afterwards.
    static func withSchema(
        logger: Logger = TestServers.logger, _ body: (PostgresConnection, String) async throws -> Void
    ) async throws {
        try await Schemas.withName("pg") { schema in
            try await PostgresConnection.withConnection(TestServers.database(schema: schema), logger: logger) {
                try await $0.execute("CREATE SCHEMA \(schema)")
                try await body($0, schema)
            }
        }
    }

    @Test func parametersAreDataAndResultsComeBackTyped() async throws {
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        let id = UUID()
        let rows = try await connection.query(
            "SELECT $1::int + 1, $2::text, $3::uuid = $4::uuid, $5::timestamptz, NULL::text, $6::bool, cardinality($7::text[])",
            [
                41, "'; DROP TABLE users; --", id, id.uuidString.lowercased(),
                Timestamp(year: 2023, month: 2, day: 8, hour: 8, minute: 29, second: 58, microsecond: 224_425), true,
                ["a\"b", "c\\d", "{e,f}"],
            ])
        #expect(rows.count == 1)
        let row = rows[0]
        #expect(try row.int(0) == 42)
        #expect(try row.string(1) == "'; DROP TABLE users; --")
        #expect(try row.bool(2))
        #expect(try row.optionalTimestamp(3)?.rfc3339 == "2023-02-08T08:29:58.224425Z")
        #expect(row[4] == nil)
        #expect(try row.bool(5))
        #expect(try row.int(6) == 3)
        #expect(rows.columns.count == 7)
    }

    @Test func aStatementPastTheTimeoutIsCancelledAndTheConnectionStaysUsable() async throws {
        var configuration = try TestServers.database()
        configuration.statementTimeout = .milliseconds(200)
        let connection = try await PostgresConnection.connect(configuration, logger: TestServers.logger)
        #expect(try await connection.query("SHOW statement_timeout")[0].string(0) == "200ms")
        await #expect {
            try await connection.query("SELECT pg_sleep(5)")
        } throws: { error in
            (error as? PostgresError)?.isStatementTimeout == true
        }
        #expect(connection.isUsable)
        #expect(try await connection.query("SELECT 1")[0].int(0) == 1)
    }

    /// A peer that vanished is noticed within a minute: the connection's socket probes after 30 s of silence, where
    /// the kernel's default waits two hours. `ss` shows the socket's keepalive timer.
    @Test func theConnectionsSocketProbesAnIdlePeerAfterThirtySeconds() async throws {
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        let port = try await connection.query("SELECT inet_client_port()")[0].int(0)
        let output = Pipe()
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: "/usr/bin/ss")
        ss.arguments = ["-tnoH", "state", "established", "( sport = :\(port) )"]
        ss.standardOutput = output
        try ss.run()
        let line = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ss.waitUntilExit()
        let timer = try #require(line.firstMatch(of: /timer:\(keepalive,(\d+)(sec|min)/), "no keepalive timer: \(line)")
        #expect(timer.output.2 == "sec" && Int(timer.output.1)! <= 30, "\(line)")
    }

    @Test func aTransactionCommitsWhenItsBodyReturnsAndRollsBackWhenItThrows() async throws {
        try await Self.withSchema { connection, _ in
            try await connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await connection.withTransaction { connection in
                    try connection.query("INSERT INTO t VALUES ($1), ($2)", [1, 2])
                    throw Abort()
                }
            }
            #expect(try await connection.query("SELECT count(*) FROM t")[0].int(0) == 0)
            let inserted = try await connection.withTransaction { connection in
                try connection.query("INSERT INTO t VALUES ($1), ($2), ($3)", [1, 2, 3]).affectedRows
            }
            #expect(inserted == 3)
            #expect(try await connection.query("SELECT sum(id) FROM t")[0].int(0) == 6)
        }
    }

    @Test(
        "errors carry their SQLSTATE and whether to retry",
        arguments: [
            ("SELECT 1/0", "22012", false),
            ("SELEC 1", "42601", false),
            ("SELECT * FROM no_such_table", "42P01", false),
            ("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$", "40001", true),
            ("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$", "40P01", true),
        ])
    func sqlState(_ sql: String, _ state: String, _ retriable: Bool) async throws {
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        do {
            try await connection.query(sql)
            Issue.record("no error")
        } catch {
            #expect(error.code == .statementFailed)
            #expect(error.sqlState == state)
            #expect(error.isRetriable == retriable)
            #expect(error.description == "PostgreSQL statement failed (SQLSTATE \(state)): the statement failed")
        }
        #expect(try await connection.query("SELECT 1")[0].int(0) == 1, "the connection stays usable")
    }

    @Test func aUniqueViolationInATransactionLeavesNothingBehind() async throws {
        try await Self.withSchema { connection, _ in
            try await connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
            await #expect {
                try await connection.withTransaction { connection in
                    try connection.query("INSERT INTO t VALUES (1)")
                    try connection.query("INSERT INTO t VALUES (1)")
                }
            } throws: { ($0 as? PostgresError)?.sqlState == "23505" }
            #expect(try await connection.query("SELECT count(*) FROM t")[0].int(0) == 0)
        }
    }

    @Test func noticesGoToTheLoggerWithTheirText() async throws {
        let (logger, store) = CapturingLogHandler.logger()
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: logger)
        try await connection.execute("DO $$ BEGIN RAISE WARNING 'rows were skipped'; END $$")
        let entries = store.entries.withLock { $0 }
        #expect(entries.count == 1)
        #expect(entries.first?.level == .warning)
        #expect(entries.first?.message == "PostgreSQL sent a notice")
        #expect(entries.first?.metadata[LogKey.notice] == "rows were skipped")
    }

    @Test func aKilledBackendIsReportedAsLostAndTheConnectionAsUnusable() async throws {
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        #expect(connection.isUsable)
        let pid = try await connection.query("SELECT pg_backend_pid()")[0].int(0)
        let killer = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        #expect(try await killer.query("SELECT pg_terminate_backend($1)", [pid])[0].bool(0))
        await #expect {
            try await connection.query("SELECT 1")
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.code == .connectionLost && error.isRetriable
        }
        #expect(!connection.isUsable)
    }

    @Test func wrongCredentialsFailWithoutEchoingThePassword() async throws {
        var configuration = try TestServers.database()
        configuration.password = "not-the-password"
        do {
            _ = try await PostgresConnection.connect(configuration, logger: TestServers.logger)
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.code == .connectionFailed)
            #expect(error.description == "PostgreSQL connection failed: could not connect to the database")
            #expect(error.debugDescription.contains("password authentication failed"))
            #expect(!error.debugDescription.contains("not-the-password"))
        }
    }

    @Test func thePoolReusesAtMostItsSizeAndRepeatsABodyThatAStaleConnectionBroke() async throws {
        // Thirty requests queue for three connections: the wait is not what this test is about.
        let pool = PostgresPool(
            configuration: try TestServers.database(), maxConnections: 3, acquireTimeout: .seconds(30),
            logger: TestServers.logger)
        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<30 {
                group.addTask {
                    try await pool.withConnection { connection in
                        try await connection.query("SELECT pg_backend_pid() FROM pg_sleep(0.01)")[0].int(0)
                    }
                }
            }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        #expect((1...3).contains(pids.count))

        let killer = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        for pid in pids { try await killer.query("SELECT pg_terminate_backend($1)", [pid]) }
        // Every idle connection is dead: the body breaks each in turn, and answers on a fresh one.
        let runs = Mutex(0)
        let answer = try await pool.withConnection { connection in
            runs.withLock { $0 += 1 }
            return try await connection.query("SELECT pg_backend_pid()")[0].int(0)
        }
        #expect(runs.withLock { $0 } == pids.count + 1)
        #expect(!pids.contains(answer))

        // A body that fails on a sound connection is not repeated.
        let failedRuns = Mutex(0)
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { connection in
                failedRuns.withLock { $0 += 1 }
                return try await connection.query("SELECT 1/0")
            }
        }
        #expect(failedRuns.withLock { $0 } == 1)
    }

    @Test func aClosedConnectionEndsItsSessionAndRefusesMore() async throws {
        let connection = try await PostgresConnection.connect(TestServers.database(), logger: TestServers.logger)
        let pid = try await connection.query("SELECT pg_backend_pid()")[0].int(0)
        await connection.close()
        await connection.close()
        #expect(!connection.isUsable)
        await #expect(throws: PostgresError.self) { try await connection.query("SELECT 1") }
        try await PostgresConnection.withConnection(TestServers.database(), logger: TestServers.logger) { other in
            // The server saw the session end: libpq's close sends Terminate before it returns.
            let sessions = try await other.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid])
            #expect(try sessions[0].int(0) == 0)
        }
    }

    @Test func aClosedPoolWaitsForWhatItLentThenRefusesMore() async throws {
        let pool = PostgresPool(
            configuration: try TestServers.database(), maxConnections: 2, logger: TestServers.logger)
        let (lent, lending) = AsyncStream<Int>.makeStream()
        let (release, releasing) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await pool.withConnection { connection in
                    lending.yield(try await connection.query("SELECT pg_backend_pid()")[0].int(0))
                    // Holds the connection until the pool is closing.
                    for await _ in release { break }
                    _ = try await connection.query("SELECT 1")
                }
            }
            var lentPIDs = lent.makeAsyncIterator()
            let pid = try #require(await lentPIDs.next())
            group.addTask { await pool.close() }
            // The pool closes only once the lent connection is back: it is still in use here.
            try await Task.sleep(for: .milliseconds(200))
            try await PostgresConnection.withConnection(TestServers.database(), logger: TestServers.logger) { other in
                let sessions = try await other.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid])
                #expect(try sessions[0].int(0) == 1)
            }
            releasing.yield()
            try await group.waitForAll()
            try await PostgresConnection.withConnection(TestServers.database(), logger: TestServers.logger) { other in
                let sessions = try await other.query("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid])
                #expect(try sessions[0].int(0) == 0)
            }
        }
        await #expect {
            try await pool.withConnection { try await $0.query("SELECT 1") }
        } throws: { ($0 as? PostgresError)?.code == .closed }
    }

    @Test func theReaderRoleCanSelectButNotWrite() async throws {
        try await Self.withSchema { connection, schema in
            try await connection.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (5)")
            let reader = try await PostgresConnection.connect(
                TestServers.readerDatabase(schema: schema), logger: TestServers.logger)
            #expect(try await reader.query("SELECT id FROM t")[0].int(0) == 5)
            await #expect {
                try await reader.query("INSERT INTO t VALUES (6)")
            } throws: { ($0 as? PostgresError)?.sqlState == "42501" }
            await #expect {
                try await reader.execute("CREATE TABLE u (id int)")
            } throws: { ($0 as? PostgresError)?.sqlState == "42501" }
        }
    }
}
