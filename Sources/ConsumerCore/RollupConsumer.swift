import AMQPClient
import Basics
import Logging
import Pipeline
import PostgresClient
import ServiceLifecycle
import Synchronization

/// The consumer (docs/architecture.md, "How an event becomes a visit"): takes events from the rollups queue in
/// batches, counts each event once, dead-letters what cannot be counted, and acknowledges only what a committed
/// transaction holds.
///
/// Batches form themselves: whenever a fold connection (`DatabaseStage`) is free, the deliveries that have arrived,
/// up to `BATCH_SIZE`, are its next batch, folded at once; while folds run, the next batches gather. At a low rate
/// each check-in is folded within milliseconds of its arrival; draining a backlog, batches are full. A fold may
/// commit before an older one; acknowledgements follow the order of arrival (`DeliveryWindow`). Two folds in flight
/// never deadlock, as they lock rows in one order (`RollupWriter`): the later one waits at worst. The AMQP
/// connection and each database connection live on a thread of their own.
public final class RollupConsumer: Service {
    private let settings: ConsumerSettings
    private let logger: Logger
    private let metrics: ConsumerMetrics
    private let databases: [DatabaseStage]
    private let faults: DatabaseFaults
    private let deadLetters: DeadLetterRouting
    private let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    private let isStopping = Atomic<Bool>(false)
    private let isConsuming = Atomic<Bool>(false)
    /// When the last batch committed (or the consumer started), in microseconds since the epoch.
    private let lastCommit = Atomic<Int64>(Timestamp.now.microsecondsSinceEpoch)

    public init(settings: ConsumerSettings, logger: Logger, metrics: ConsumerMetrics = ConsumerMetrics()) {
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        let writer = RollupWriter()
        let faults = DatabaseFaults(logger: logger)
        self.faults = faults
        self.databases = (0..<settings.foldConnections).map { number in
            DatabaseStage(
                number: number, configuration: settings.database, writer: writer, metrics: metrics, faults: faults,
                logger: logger)
        }
        self.deadLetters = DeadLetterRouting(settings: settings, metrics: metrics, logger: logger)
    }

    /// Why the consumer is not ready, or nil when it is: it takes events, and its folds wait for no fault of the
    /// database. The readiness probe's answer.
    public var unreadiness: String? {
        if let fault = faults.current { return "\(fault)" }
        return isConsuming.load(ordering: .relaxed) ? nil : "not consuming"
    }

    /// Runs until a graceful shutdown (SIGTERM), then finishes the batches it holds, acknowledges them and returns.
    /// When the shutdown deadline cancels it first (the database is down), the batches are left unacknowledged,
    /// for the broker to deliver again. Its connections are closed either way.
    public func run() async throws {
        defer { logger.info("Stopped consuming") }
        do {
            try await withGracefulShutdownHandler {
                try await waitForSchema()
                try await consumeUntilStopped()
            } onGracefulShutdown: {
                self.isStopping.store(true, ordering: .relaxed)
            }
        } catch is CancellationError where stopping {
            logger.warning(
                "The shutdown deadline passed before the batches in hand committed; they will be delivered again")
        } catch {
            await closeConnections()
            throw error
        }
        await closeConnections()
    }

    private func closeConnections() async {
        await deadLetters.close()
        for database in databases { await database.close() }
    }

    private var stopping: Bool { isStopping.load(ordering: .relaxed) }

    /// Waits for the database (it may start after the consumer) and checks its schema version on every stage's
    /// connection, which opens them all before the readiness probe asks after them.
    private func waitForSchema() async throws {
        try await backoff.retrying(
            isRetriable: { ($0 as? PostgresError)?.isRetriable ?? false },
            failed: { error, _, delay in
                logger.warning(
                    "The database is not reachable yet; retrying",
                    metadata: [
                        LogKey.error: "\((error as? PostgresError)?.debugDescription ?? "\(error)")",
                        LogKey.delay: "\(delay)",
                    ])
            }
        ) {
            for database in databases { try await database.checkSchema() }
            let recorded = try await databases[0].recordedZones()
            if recorded != Set(settings.zones.folded) {
                logger.warning(
                    "REPORT_TIMEZONES differs from the zones the database keeps; run consumer migrate to apply it",
                    metadata: [
                        LogKey.zonesConfigured: "\(settings.zones.folded.joined(separator: ","))",
                        LogKey.zonesRecorded: "\(recorded.sorted().joined(separator: ","))",
                    ])
            }
        }
    }

    /// Consumes until stopped, opening a new session with backoff whenever the broker is lost.
    private func consumeUntilStopped() async throws {
        // The node of the last session: once it is lost, the next one tries the other nodes first.
        var lastNode: AMQPConfiguration.Node?
        var hasConsumed = false
        try await backoff.retrying(
            isRetriable: { ($0 as? AMQPError)?.isRetriable ?? false },
            failed: { error, attempt, delay in
                logger.warning(
                    "Lost the broker; reconnecting",
                    metadata: [
                        LogKey.error: "\((error as? AMQPError)?.debugDescription ?? "\(error)")",
                        LogKey.attempt: "\(attempt)", LogKey.delay: "\(delay)",
                    ])
            }
        ) {
            guard !stopping else { return }
            let session = try await BrokerSession.open(settings, after: lastNode, logger: logger)
            lastNode = session.connection.node
            if hasConsumed { metrics.recordBrokerReconnect(to: session.connection.node) }
            hasConsumed = true
            isConsuming.store(true, ordering: .relaxed)
            logger.info(
                "Consuming events",
                metadata: [
                    LogKey.amqpQueue: "\(settings.topology.queue)", LogKey.amqpNode: "\(session.connection.node)",
                ])
            do {
                try await consume(session)
            } catch {
                isConsuming.store(false, ordering: .relaxed)
                await session.connection.close()
                await deadLetters.close()
                throw error
            }
            isConsuming.store(false, ordering: .relaxed)
            await session.connection.close()
        }
    }

    /// A batch whose fold is under way.
    private struct Fold {
        /// The stage it folds on.
        var stage: Int
        /// The deliveries of its events, whose indices the database's refusals name.
        var deliveries: [AMQPDelivery]
        /// When its first delivery was published, where the publisher stamped it.
        var publishedAt: UInt64?
    }

    /// How long a read waits for a delivery while a fold is under way: its commit is taken, and acknowledged, when
    /// the read returns. With no fold under way, it waits longer, to turn the loop at least twice a second.
    private static let readTimeoutWhileFolding = Duration.milliseconds(5)
    private static let readTimeoutWhileIdle = Duration.milliseconds(500)
    /// How long a batch waiting for `BATCH_MAX_DELAY_MS` lets deliveries gather between reads: reading them as they
    /// arrived woke the AMQP thread every few messages.
    private static let gatheringPause = Duration.milliseconds(2)

    /// Consumes until stopped or the session is lost. The folds are child tasks of a task group that ends with this
    /// loop: a stop finishes and acknowledges them first; a lost session cancels them, and what they had not
    /// acknowledged is delivered again.
    private func consume(_ session: BrokerSession) async throws {
        let amqp = session.connection
        let completions = FoldCompletions()
        let policy = BatchPolicy(
            batchSize: settings.batchSize, maxDelay: settings.batchMaxDelay, prefetch: settings.prefetch)
        try await withThrowingDiscardingTaskGroup { group in
            var window = DeliveryWindow()
            var folding: [DeliveryWindow.BatchID: Fold] = [:]
            var idleStages = Array(databases.indices.reversed())
            // Deliveries received and not yet in a batch.
            var received: [AMQPDelivery] = []
            var firstReceivedAt = ContinuousClock.now

            func settleCompletedFolds() async throws {
                for completion in completions.take() {
                    guard let fold = folding.removeValue(forKey: completion.batch) else { continue }
                    idleStages.append(fold.stage)
                    try await settle(fold, completion, in: &window, amqp)
                }
            }

            while true {
                // Cancelled when the group fails (its probe server could not listen) or the shutdown deadline
                // passed: what is not acknowledged returns to the queue.
                try Task.checkCancellation()
                try await settleCompletedFolds()
                metrics.unacknowledged.record(window.unacknowledged + received.count)
                recordSinceLastCommit()
                if stopping {
                    try await amqp.cancel(session.consumerTag)
                    while !folding.isEmpty {
                        try await waitKeepingAlive(completions, amqp)
                        try await settleCompletedFolds()
                    }
                    return
                }
                guard let stage = idleStages.last else {
                    try await waitKeepingAlive(completions, amqp)
                    continue
                }
                if received.count < settings.batchSize {
                    // A batch gathering for BATCH_MAX_DELAY_MS takes what arrived during its pause.
                    let timeout =
                        !received.isEmpty
                        ? .zero
                        : folding.isEmpty ? Self.readTimeoutWhileIdle : Self.readTimeoutWhileFolding
                    let arrived = try await amqp.nextDeliveries(
                        limit: settings.batchSize - received.count, timeout: timeout)
                    if received.isEmpty { firstReceivedAt = .now }
                    received += arrived
                    metrics.received.increment(by: arrived.count)
                }
                guard
                    policy.isReady(
                        received: received.count, unacknowledged: window.unacknowledged,
                        waited: .now - firstReceivedAt)
                else {
                    if !received.isEmpty { try await Task.sleep(for: Self.gatheringPause) }
                    continue
                }
                let batch = Array(
                    received.prefix(policy.size(previousDeliveries: received.lazy.map(\.previousDeliveries))))
                received.removeFirst(batch.count)
                let sorted = try await deadLetters.sort(batch, consumingOn: amqp)
                let id = window.open(tags: batch.map(\.deliveryTag))
                for tag in sorted.requeued { window.settle(tag, in: id) }
                let publishedAt = batch.first?.timestamp
                if let publishedAt {
                    metrics.oldestEventAge.record(
                        Double(Timestamp.now.microsecondsSinceEpoch) / 1e6 - Double(publishedAt))
                }
                idleStages.removeLast()
                folding[id] = Fold(stage: stage, deliveries: sorted.deliveries, publishedAt: publishedAt)
                let database = databases[stage]
                let prepared = database.prepare(sorted.events)
                group.addTask {
                    let outcome = try await database.foldIsolatingRefusals(prepared)
                    completions.add(.init(batch: id, outcome: outcome, committedAt: .now))
                }
            }
        }
    }

    /// Takes a fold's commit: dead-letters the events the database refused, and acknowledges what the window allows.
    private func settle(
        _ fold: Fold, _ completion: FoldCompletions.Completion, in window: inout DeliveryWindow, _ amqp: AMQPConnection
    ) async throws {
        let outcome = completion.outcome
        if !outcome.refused.isEmpty {
            let requeued = try await deadLetters.deadLetter(
                outcome.refused.map { index, error in
                    DeadLetterRouting.Rejected(
                        delivery: fold.deliveries[index], reason: "the database refused the event (\(error))",
                        kind: nil)
                }, consumingOn: amqp)
            for tag in requeued { window.settle(tag, in: completion.batch) }
        }
        if let tag = window.commit(completion.batch) { try await amqp.ack(tag, multiple: true) }
        metrics.folded.increment(by: outcome.result.counted)
        metrics.duplicates.increment(by: outcome.result.duplicates)
        metrics.batchSize.record(fold.deliveries.count)
        let committed = completion.committedAt.microsecondsSinceEpoch
        lastCommit.store(committed, ordering: .relaxed)
        if outcome.result.counted > 0 { metrics.lastFold.record(Double(committed) / 1e6) }
        if let publishedAt = fold.publishedAt {
            metrics.publishToCommit.record(max(0, Double(committed) / 1e6 - Double(publishedAt)))
        }
        logger.debug(
            "Folded a batch",
            metadata: [
                LogKey.batchSize: "\(fold.deliveries.count)", LogKey.batchCounted: "\(outcome.result.counted)",
                LogKey.batchDuplicates: "\(outcome.result.duplicates)",
            ])
    }

    private func recordSinceLastCommit() {
        metrics.sinceLastCommit.record(
            Double(Timestamp.now.microsecondsSinceEpoch - lastCommit.load(ordering: .relaxed)) / 1e6)
    }

    /// Waits for a fold to complete; if that takes long (the database is down), keeps the AMQP connection's
    /// heartbeats going, which librabbitmq only sends from inside its own calls, and the gauge of the time since the
    /// last commit turning.
    private func waitKeepingAlive(_ completions: FoldCompletions, _ amqp: AMQPConnection) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await completions.wait() }
            group.addTask {
                try await Task.sleep(for: .seconds(5))
                while !Task.isCancelled {
                    try await amqp.keepAlive(for: .seconds(1))
                    self.recordSinceLastCommit()
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}

extension AMQPDelivery {
    /// How often the broker delivered this message before: the quorum queue's `x-delivery-count`, or 1 for a
    /// redelivery without it. A first delivery carries no count, so its properties are not decoded.
    var previousDeliveries: Int {
        guard redelivered else { return 0 }
        switch header("x-delivery-count") {
        case .int64(let count)?: return Int(count)
        case .int32(let count)?: return Int(count)
        case .int16(let count)?: return Int(count)
        case .int8(let count)?: return Int(count)
        default: return 1
        }
    }
}
