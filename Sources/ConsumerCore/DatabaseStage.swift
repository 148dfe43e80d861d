import Basics
import Foundation
import Logging
import Metrics
import Pipeline
import PostgresClient
import Synchronization

/// The consumer's database side: one connection, reopened when it breaks, and the fold retried until it
/// commits. The consumer gives a stage one batch at a time.
///
/// Any failure that is not a refusal of the events' data is a fault of the database (`DatabaseFault`: it is down,
/// read-only, out of disk or connections, an administrator cancelled the fold, a table is missing...): the fold waits
/// with capped backoff and tries again, for as long as it takes, and the batch stays unacknowledged meanwhile, so that
/// no event is lost and none has its delivery counted again. `faults` hears each fault and each recovery.
actor DatabaseStage {
    private let configuration: PostgresConfiguration
    private let writer: RollupWriter
    private let metrics: ConsumerMetrics
    private let logger: Logger
    private let faults: DatabaseFaults
    /// This stage's number among the consumer's, for `faults`.
    private let number: Int
    private let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    private var connection: PostgresConnection?
    private var hasConnected = false

    init(
        number: Int, configuration: PostgresConfiguration, writer: RollupWriter, metrics: ConsumerMetrics,
        faults: DatabaseFaults, logger: Logger
    ) {
        self.number = number
        self.configuration = configuration
        self.writer = writer
        self.metrics = metrics
        self.faults = faults
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

    /// Folds a prepared batch; when the database refuses the batch's data (SQLSTATE class 22 or 23, which no retry
    /// mends), folds halves of it, down to single events, so that only the events it refuses are set aside. A
    /// refusal that a known-good event meets too (a zone of `report_zones` that PostgreSQL does not know) would refuse
    /// every event of the stream: it is a fault of the database, waited out like the others.
    func foldIsolatingRefusals(_ prepared: PreparedFold) async throws -> Outcome {
        var attempt = 0
        while true {
            do {
                return Outcome(result: try await fold(prepared), refused: [])
            } catch let error as PostgresError where error.isDataRefusal {
                guard let refusal = try await refusalOfAKnownGoodEvent() else {
                    return try await isolateRefusals(prepared)
                }
                attempt += 1
                faults.record(DatabaseFault(refusal, refusingAnyEvent: true), stage: number, error: refusal)
                try await Task.sleep(for: backoff.delay(attempt: attempt))
            }
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
        } catch is PostgresError {
            // Unknown for now; isolating the refusals waits out such faults until the database answers.
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

    /// Folds a prepared batch in one transaction, waiting out every fault of the database until it commits or the
    /// task is cancelled. A refusal of the events' data is thrown.
    func fold(_ prepared: PreparedFold) async throws -> FoldResult {
        let writer = self.writer
        let result = try await backoff.retrying(
            isRetriable: { ($0 as? PostgresError).map { !$0.isDataRefusal } ?? false },
            failed: { error, _, _ in
                guard let error = error as? PostgresError else { return }
                faults.record(DatabaseFault(error), stage: number, error: error)
            }
        ) {
            let connection = try await usableConnection()
            let started = ContinuousClock.now
            let result = try await connection.withTransaction { try writer.fold(prepared, on: $0) }
            metrics.commitDuration.recordElapsed(since: started)
            return result
        }
        faults.record(nil, stage: number)
        return result
    }

    /// Closes the connection; the next fold would open another.
    func close() async {
        await connection?.close()
        connection = nil
    }

    private func usableConnection() async throws -> PostgresConnection {
        if let connection, connection.isUsable { return connection }
        await close()
        let opened = try await PostgresConnection.connect(configuration, logger: logger)
        if hasConnected { metrics.recordDatabaseReconnect() }
        hasConnected = true
        connection = opened
        return opened
    }
}

extension Timer {
    func recordElapsed(since start: ContinuousClock.Instant) {
        recordNanoseconds(Int64((ContinuousClock.now - start) / .nanoseconds(1)))
    }
}
