import Foundation
import Logging
import Metrics
import Shared
import Synchronization

/// The consumer's database side: one connection, reopened when it breaks, and the fold retried until it
/// commits. A stage may be given the next batch while one folds; the connection's thread begins it right after.
/// Retriable failures (a lost connection, a deadlock, a serialization failure, a database that is down) wait
/// with capped backoff and try again; nothing is acknowledged meanwhile, so nothing is lost.
actor DatabaseStage {
    private let configuration: PostgresConfiguration
    private let writer: RollupWriter
    private let metrics: ConsumerMetrics
    private let logger: Logger
    private let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    private var connection: PostgresConnection?
    private var connecting: Task<PostgresConnection, any Error>?
    private var hasConnected = false
    /// Whether the last attempt reached the database; read by the readiness probe.
    nonisolated let isHealthy = Atomic<Bool>(false)

    init(configuration: PostgresConfiguration, writer: RollupWriter, metrics: ConsumerMetrics, logger: Logger) {
        self.configuration = configuration
        self.writer = writer
        self.metrics = metrics
        self.logger = logger
    }

    /// Checks that the schema is the one this program was built for, before any event is taken.
    func checkSchema() async throws {
        let version = try await usableConnection().query("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]
            .int(0)
        guard version == Migrator.latestVersion else {
            throw PostgresError(
                .unexpectedResult,
                "the schema is at version \(version) and this consumer needs \(Migrator.latestVersion): run consumer migrate"
            )
        }
    }

    /// The zones `consumer migrate` recorded, which every fold keeps daily rows for.
    func recordedZones() async throws -> Set<String> {
        Set(try await usableConnection().query("SELECT zone FROM report_zones").rows.map { try $0.string(0) })
    }

    /// A fold's result, and the events the database refused (by index), each with the error.
    struct Outcome: Sendable {
        var result: FoldResult
        var refused: [(index: Int, error: PostgresError)]
    }

    /// Does the part of folding `events` that needs no database (`RollupWriter.prepare(_:)`), on the caller's
    /// thread.
    nonisolated func prepare(_ events: [Event]) -> PreparedFold {
        writer.prepare(events)
    }

    /// Folds a prepared batch; when the database refuses the batch's data (an error no retry mends), folds
    /// halves of it, down to single events, so that only the events it refuses are set aside. Any other failure
    /// that no retry mends (the schema changed under the consumer, a privilege was revoked) is thrown: it is no
    /// event's fault, and the consumer stops rather than dead-letter every event. So is a data refusal that a
    /// known-good event meets too (a zone of `report_zones` that PostgreSQL does not know): it would refuse every
    /// event of the stream.
    func foldIsolatingRefusals(_ prepared: PreparedFold) async throws -> Outcome {
        do {
            return Outcome(result: try await fold(prepared), refused: [])
        } catch let error as PostgresError where error.isDataRefusal {
            if let refusal = try await refusalOfAKnownGoodEvent() {
                throw PostgresError(
                    refusal.code, "the database refuses any event, a known-good one too: the fault is not the events'",
                    sqlState: refusal.sqlState, serverMessage: refusal.serverMessage)
            }
            return try await isolateRefusals(prepared)
        }
    }

    /// The refusal a check-in that breaks no rule meets when folded in a transaction that is rolled back, or nil
    /// when it would be counted (or the database could not tell).
    private func refusalOfAKnownGoodEvent() async throws -> PostgresError? {
        let probe = prepare([
            Event(
                id: UUID(), kind: .checkin, userID: 1, occurredAt: Timestamp(year: 2020, month: 1, day: 1, hour: 12))
        ])
        let writer = self.writer
        do {
            _ = try await usableConnection().withRolledBackTransaction { try writer.fold(probe, on: $0) }
            return nil
        } catch let error as PostgresError where error.isDataRefusal {
            return error
        } catch let error as PostgresError where error.isRetriable {
            // Unknown for now; isolating the refusals retries such failures until the database answers.
            return nil
        }
    }

    private func isolateRefusals(_ prepared: PreparedFold) async throws -> Outcome {
        do {
            return Outcome(result: try await fold(prepared), refused: [])
        } catch let error as PostgresError where error.isDataRefusal {
            let events = prepared.events
            guard events.count > 1 else {
                logger.error("The database refused an event", metadata: [LogKey.error: "\(error.debugDescription)"])
                return Outcome(result: FoldResult(counted: 0, duplicates: 0), refused: [(0, error)])
            }
            let middle = events.count / 2
            let (firstHalf, secondHalf) = (Array(events[..<middle]), Array(events[middle...]))
            let first = try await isolateRefusals(prepare(firstHalf))
            let second = try await isolateRefusals(prepare(secondHalf))
            return Outcome(
                result: FoldResult(
                    counted: first.result.counted + second.result.counted,
                    duplicates: first.result.duplicates + second.result.duplicates),
                refused: first.refused + second.refused.map { ($0.index + middle, $0.error) })
        }
    }

    /// Folds a prepared batch in one transaction, retrying retriable failures until it commits or the task is
    /// cancelled. A failure that is not retriable (the database refuses these events) is thrown.
    func fold(_ prepared: PreparedFold) async throws -> FoldResult {
        var attempt = 0
        while true {
            do {
                let connection = try await usableConnection()
                let writer = self.writer
                let started = ContinuousClock.now
                let result = try await connection.withTransaction { try writer.fold(prepared, on: $0) }
                metrics.commitDuration.recordElapsed(since: started)
                isHealthy.store(true, ordering: .relaxed)
                return result
            } catch let error as PostgresError where error.isRetriable {
                attempt += 1
                let delay = backoff.delay(attempt: attempt)
                if connection?.isUsable == false {
                    connection = nil
                    isHealthy.store(false, ordering: .relaxed)
                }
                logger.warning(
                    "Folding a batch failed; retrying",
                    metadata: [
                        LogKey.error: "\(error.debugDescription)", LogKey.attempt: "\(attempt)",
                        LogKey.delay: "\(delay)",
                    ])
                try await Task.sleep(for: delay)
            }
        }
    }

    private func usableConnection() async throws -> PostgresConnection {
        if let connection, connection.isUsable { return connection }
        connection = nil
        // A stage holds up to two batches, the second queued behind the first: both share one new connection.
        if let connecting { return try await connecting.value }
        let attempt = Task { [configuration, logger] in
            try await PostgresConnection.connect(configuration, logger: logger)
        }
        connecting = attempt
        defer { connecting = nil }
        let opened = try await attempt.value
        if hasConnected { metrics.recordDatabaseReconnect() }
        hasConnected = true
        connection = opened
        isHealthy.store(true, ordering: .relaxed)
        return opened
    }
}

extension Timer {
    func recordElapsed(since start: ContinuousClock.Instant) {
        recordNanoseconds(Int64((ContinuousClock.now - start) / .nanoseconds(1)))
    }
}
