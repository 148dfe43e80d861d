import Basics
import Logging
import Metrics
import PostgresClient
import Synchronization

/// Why folds wait for the database: it cannot take the batch now, for a reason that is not the events'. A fault
/// never costs an event its delivery: the consumer holds the batch, unacknowledged, and tries again with backoff.
public struct DatabaseFault: Sendable, Equatable, CustomStringConvertible {
    /// The kind of fault, the label of `coworking_consumer_waiting_for_database`.
    public enum Kind: String, Sendable, CaseIterable {
        /// It cannot be reached (SQLSTATE class 08, a refused or lost connection).
        case connection
        /// It refuses writes (class 25: read-only after a failover, `default_transaction_read_only`).
        case readOnly = "read_only"
        /// It is out of a resource (class 53: disk full, out of memory, too many connections).
        case resources
        /// An operator stopped the work (class 57: a cancel, a shutdown or a start).
        case operatorIntervention = "operator_intervention"
        /// The batch met another transaction (class 40, 55P03: a serialization failure, a deadlock, a lock).
        case conflict
        /// It refuses a known-good event too, so that it would refuse any: a fault of its own, not the events'.
        case refusesAnyEvent = "refuses_any_event"
        /// Any other failure that is not a refusal of the events' data (a missing table, a revoked privilege).
        case other
    }

    public var kind: Kind
    /// The SQLSTATE, when the server gave one.
    public var sqlState: String?

    public init(kind: Kind, sqlState: String?) {
        self.kind = kind
        self.sqlState = sqlState
    }

    /// The fault that `error` reports; `refusingAnyEvent` when a known-good event was refused with it too.
    public init(_ error: PostgresError, refusingAnyEvent: Bool = false) {
        sqlState = error.sqlState
        if refusingAnyEvent {
            kind = .refusesAnyEvent
            return
        }
        switch (error.code, error.sqlState?.prefix(2)) {
        case (.connectionFailed, _), (.connectionLost, _), (_, "08"): kind = .connection
        case (_, "25"): kind = .readOnly
        case (_, "53"): kind = .resources
        case (_, "57"): kind = .operatorIntervention
        case (_, "40"): kind = .conflict
        case _ where error.sqlState == "55P03": kind = .conflict
        default: kind = .other
        }
    }

    /// One sentence for the log and the readiness probe, naming the SQLSTATE but no server text.
    public var description: String {
        let what =
            switch kind {
            case .connection: "the database cannot be reached"
            case .readOnly: "the database refuses writes (read-only)"
            case .resources: Self.resource(sqlState)
            case .operatorIntervention: "an operator cancelled the work, or the server is stopping or starting"
            case .conflict: "the batch met another transaction"
            case .refusesAnyEvent: "the database refuses any event, a known-good one too"
            case .other: "the database failed the batch"
            }
        return sqlState.map { "\(what) (SQLSTATE \($0))" } ?? what
    }

    private static func resource(_ sqlState: String?) -> String {
        switch sqlState {
        case "53100": "the database's disk is full"
        case "53200": "the database is out of memory"
        case "53300": "the database has too many connections"
        default: "the database is out of a resource"
        }
    }
}

/// The consumer's view of its database stages' faults: what the readiness probe says, one log line when the state
/// changes (not one per retry), and `coworking_consumer_waiting_for_database{reason}`, 1 for the fault folds wait on.
final class DatabaseFaults: Sendable {
    private struct State {
        var byStage: [Int: DatabaseFault] = [:]
        var reported: DatabaseFault?
        var since: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let logger: Logger
    private let waiting: [DatabaseFault.Kind: Gauge]

    init(logger: Logger) {
        self.logger = logger
        var waiting: [DatabaseFault.Kind: Gauge] = [:]
        for kind in DatabaseFault.Kind.allCases {
            let gauge = Gauge(label: "coworking_consumer_waiting_for_database", dimensions: [("reason", kind.rawValue)])
            gauge.record(0)
            waiting[kind] = gauge
        }
        self.waiting = waiting
    }

    /// The fault folds wait on, if any (the first stage's that has one).
    var current: DatabaseFault? {
        state.withLock { $0.reported }
    }

    /// Records that stage `stage` meets `fault` (`error` the server's own words, for the log), or none once its fold
    /// committed.
    func record(_ fault: DatabaseFault?, stage: Int, error: PostgresError? = nil) {
        let (previous, current, waited) = state.withLock { state -> (DatabaseFault?, DatabaseFault?, Duration?) in
            state.byStage[stage] = fault
            let current = state.byStage.sorted { $0.key < $1.key }.first?.value
            let previous = state.reported
            guard current != previous else { return (previous, current, nil) }
            state.reported = current
            let now = ContinuousClock.now
            let waited = current == nil ? state.since.map { now - $0 } : nil
            if previous == nil { state.since = now }
            if current == nil { state.since = nil }
            return (previous, current, waited)
        }
        guard current != previous else { return }
        if let previous { waiting[previous.kind]?.record(0) }
        if let current {
            waiting[current.kind]?.record(1)
            var metadata: Logger.Metadata = [LogKey.databaseFault: "\(current)"]
            if let error { metadata[LogKey.error] = "\(error.debugDescription)" }
            logger.warning(
                "Folding waits for the database; the batches in hand stay unacknowledged", metadata: metadata)
        } else {
            logger.notice(
                "The database takes the batches again",
                metadata: [LogKey.waited: "\(waited.map { "\($0.seconds) s" } ?? "")"])
        }
    }
}
