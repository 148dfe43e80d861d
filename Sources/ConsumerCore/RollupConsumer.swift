import AMQPClient
import Basics
import Logging
import Pipeline
import PostgresClient
import ServiceLifecycle
import Synchronization

/// The consumer (docs/architecture.md, "How an event becomes a visit"): takes events from the rollups queue in batches, counts each event once,
/// dead-letters what cannot be counted, and acknowledges only what a committed transaction holds.
///
/// Batches are pipelined: while the database stages fold up to `FOLD_CONNECTIONS` batches, each on a connection of
/// its own, the next batch is received, its invalid messages are dead-lettered, and it is queued on the stage of
/// the oldest batch, whose connection begins it as soon as that batch commits. The oldest batch is acknowledged
/// with one multiple-ack once it commits: after the next batch is queued, or before it is received when the
/// prefetch window cannot hold both (with the default window, a batch per connection). Batches are acknowledged in
/// the order they arrived, so a multiple-ack never covers a batch that has not committed. Two folds in flight
/// never deadlock, as they lock rows in one order (`RollupWriter`): the later one waits at worst. The AMQP
/// connection and each database connection live on a thread of their own.
public final class RollupConsumer: Service {
    private let settings: ConsumerSettings
    private let logger: Logger
    private let metrics: ConsumerMetrics
    private let databases: [DatabaseStage]
    private let faults: DatabaseFaults
    private let decoder: EventDecoder
    private let deadLetters: DeadLetterPublisher
    private let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    private let isStopping = Atomic<Bool>(false)
    private let isConsuming = Atomic<Bool>(false)
    /// When the last batch committed (or the consumer started), in microseconds since the epoch.
    private let lastCommit = Atomic<Int64>(Timestamp.now.microsecondsSinceEpoch)
    /// How often the queue's depth is read from the broker.
    private static let queueReadInterval = Duration.seconds(5)

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
        self.decoder = EventDecoder(rules: settings.rules)
        self.deadLetters = DeadLetterPublisher(configuration: settings.amqp, logger: logger)
    }

    /// Why the consumer is not ready, or nil when it is: it takes events, and its folds wait for no fault of the
    /// database. The readiness probe's answer.
    public var unreadiness: String? {
        if let fault = faults.current { return "\(fault)" }
        return isConsuming.load(ordering: .relaxed) ? nil : "not consuming"
    }

    /// Runs until a graceful shutdown (SIGTERM), then finishes the batch it holds, acknowledges it and returns.
    /// When the shutdown deadline cancels it first (the database is down), the batch is left unacknowledged,
    /// for the broker to deliver again.
    public func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await waitForSchema()
                try await consumeUntilStopped()
            } onGracefulShutdown: {
                self.isStopping.store(true, ordering: .relaxed)
            }
        } catch is CancellationError where stopping {
            logger.warning(
                "The shutdown deadline passed before the batch in hand committed; it will be delivered again")
        }
    }

    private var stopping: Bool { isStopping.load(ordering: .relaxed) }

    /// Waits for the database (it may start after the consumer) and checks its schema version on every stage's
    /// connection, which opens them all before the readiness probe asks after them.
    private func waitForSchema() async throws {
        var attempt = 0
        while !stopping {
            do {
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
                return
            } catch let error as PostgresError where error.isRetriable {
                attempt += 1
                let delay = backoff.delay(attempt: attempt)
                logger.warning(
                    "The database is not reachable yet; retrying",
                    metadata: [LogKey.error: "\(error.debugDescription)", LogKey.delay: "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    private func consumeUntilStopped() async throws {
        var attempt = 0
        // The node of the last connection: once it is lost, the next connection tries the other nodes first.
        var lastNode: AMQPConfiguration.Node?
        while !stopping {
            do {
                let amqp = try await AMQPConnection.connect(settings.amqp, after: lastNode, logger: logger)
                lastNode = amqp.node
                try await amqp.declare(settings.topology)
                try await amqp.setPrefetch(settings.prefetch)
                let consumerTag = try await amqp.consume(
                    settings.topology.queue, bodyLimit: settings.rules.maxBodyBytes)
                if attempt > 0 { metrics.recordBrokerReconnect(to: amqp.node) }
                attempt = 0
                isConsuming.store(true, ordering: .relaxed)
                logger.info(
                    "Consuming events",
                    metadata: [LogKey.amqpQueue: "\(settings.topology.queue)", LogKey.amqpNode: "\(amqp.node)"])
                try await consume(from: amqp, consumerTag: consumerTag)
                isConsuming.store(false, ordering: .relaxed)
                await amqp.close()
            } catch let error as AMQPError where error.isRetriable {
                isConsuming.store(false, ordering: .relaxed)
                await deadLetters.close()
                attempt += 1
                let delay = backoff.delay(attempt: attempt)
                logger.warning(
                    "Lost the broker; reconnecting",
                    metadata: [
                        LogKey.error: "\(error.debugDescription)", LogKey.attempt: "\(attempt)",
                        LogKey.delay: "\(delay)",
                    ])
                try await Task.sleep(for: delay)
            }
        }
        await deadLetters.close()
        logger.info("Stopped consuming")
    }

    /// A chunk whose fold is under way: acknowledged with one multiple-ack once it commits.
    private struct InFlight {
        /// The delivery tags of the chunk, in order, the dead-lettered ones included.
        var tags: [UInt64]
        /// Tags already settled by a requeue (a dead letter the broker did not confirm): the multiple-ack must name
        /// another tag, as the broker no longer knows these.
        var requeued: Set<UInt64>
        /// Deliveries in the chunk, the dead-lettered ones included: all unacknowledged until it commits.
        var received: Int { tags.count }
        var deliveries: [AMQPDelivery]
        /// When the chunk's first delivery was published, where the publisher stamped it.
        var publishedAt: UInt64?
        var fold: ChildTaskResult<DatabaseStage.Outcome>
    }

    /// Consumes until stopped or the connection is lost. The folds in flight are child tasks of a task group that
    /// ends with this loop: a stop finishes and acknowledges them first; a lost connection cancels them, and what
    /// they had not acknowledged is delivered again.
    private func consume(from amqp: AMQPConnection, consumerTag: String) async throws {
        try await withThrowingDiscardingTaskGroup { folds in
            try await consume(from: amqp, consumerTag: consumerTag, folding: &folds)
        }
    }

    private func consume(
        from amqp: AMQPConnection, consumerTag: String, folding folds: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        // Oldest first; the fold at position i of the sequence of chunks runs on stage i mod the stage count, so
        // a stage holds two chunks at most: one folding, the next queued behind it.
        var inFlight: [InFlight] = []
        var nextStage = 0
        var queueReadAt = ContinuousClock.now - Self.queueReadInterval
        while true {
            // Cancelled when the group fails (its probe server could not listen) or the shutdown deadline
            // passed: what is not acknowledged returns to the queue.
            try Task.checkCancellation()
            metrics.unacknowledged.record(inFlight.reduce(0) { $0 + $1.received })
            metrics.sinceLastCommit.record(
                Double(Timestamp.now.microsecondsSinceEpoch - lastCommit.load(ordering: .relaxed)) / 1e6)
            if ContinuousClock.now - queueReadAt >= Self.queueReadInterval {
                queueReadAt = .now
                if let ready = try? await deadLetters.readyMessages(in: settings.topology.queue) {
                    metrics.queueReady.record(ready)
                }
            }
            if stopping {
                try await amqp.cancel(consumerTag)
                for pending in inFlight { try await finish(pending, amqp) }
                return
            }
            // The broker sends no more than PREFETCH unacknowledged deliveries: when the window cannot hold
            // another batch (with the default window, once every connection holds one), the oldest chunks are
            // acknowledged first, rather than waiting for deliveries that cannot come.
            while !inFlight.isEmpty,
                inFlight.reduce(0, { $0 + $1.received }) + settings.batchSize > settings.prefetch
            {
                try await finish(inFlight.removeFirst(), amqp)
            }
            let deliveries = try await amqp.nextDeliveries(
                limit: settings.batchSize, maxDelay: settings.batchMaxDelay, idleTimeout: .milliseconds(500))
            guard !deliveries.isEmpty else {
                while !inFlight.isEmpty { try await finish(inFlight.removeFirst(), amqp) }
                continue
            }
            metrics.received.increment(by: deliveries.count)
            for chunk in chunks(of: deliveries) {
                let (events, eventDeliveries, requeued) = try await decodeDeadLetteringInvalid(chunk, amqp)
                let database = databases[nextStage]
                nextStage = (nextStage + 1) % databases.count
                // Prepared and queued on its stage while the batches before fold: the stage's connection begins
                // it as soon as its previous transaction commits, without waiting for this loop to take the
                // commit, acknowledge it and hand the connection the next batch.
                let prepared = database.prepare(events)
                let publishedAt = chunk.first?.timestamp
                if let publishedAt {
                    metrics.oldestEventAge.record(
                        Double(Timestamp.now.microsecondsSinceEpoch) / 1e6 - Double(publishedAt))
                }
                inFlight.append(
                    InFlight(
                        tags: chunk.map(\.deliveryTag), requeued: requeued, deliveries: eventDeliveries,
                        publishedAt: publishedAt,
                        fold: ChildTaskResult(in: &folds) { try await database.foldIsolatingRefusals(prepared) }))
                if inFlight.count > databases.count { try await finish(inFlight.removeFirst(), amqp) }
            }
        }
    }

    /// Splits deliveries that came back after a crash or a lost connection into smaller chunks, the more times
    /// they came back the smaller (down to one), so that a message that crashes the consumer reaches the
    /// delivery limit alone, without valid events beside it.
    private func chunks(of deliveries: [AMQPDelivery]) -> [ArraySlice<AMQPDelivery>] {
        let mostDeliveries = deliveries.map(\.previousDeliveries).max() ?? 0
        guard mostDeliveries > 0 else { return [deliveries[...]] }
        let size = max(1, settings.batchSize >> min(mostDeliveries, 20))
        return stride(from: 0, to: deliveries.count, by: size).map {
            deliveries[$0..<min($0 + size, deliveries.count)]
        }
    }

    /// Decodes a chunk; the messages that are not valid events go to the dead-letter exchange with their reason,
    /// and once the broker confirms they are there, they need only the chunk's acknowledgement. Returns the events,
    /// their deliveries, and the tags of the invalid messages requeued instead (their dead letters unconfirmed).
    private func decodeDeadLetteringInvalid(_ chunk: ArraySlice<AMQPDelivery>, _ amqp: AMQPConnection) async throws
        -> ([Event], [AMQPDelivery], Set<UInt64>)
    {
        let now = Timestamp.now
        var events: [Event] = []
        var eventDeliveries: [AMQPDelivery] = []
        var rejected: [(AMQPDelivery, String, EventRejection.Kind?)] = []
        events.reserveCapacity(chunk.count)
        for delivery in chunk {
            do {
                events.append(try decoder.decode(delivery.body, bodySize: delivery.bodySize, now: now))
                eventDeliveries.append(delivery)
            } catch {
                rejected.append((delivery, error.description, error.kind))
            }
        }
        let requeued = try await deadLetter(rejected, amqp)
        return (events, eventDeliveries, requeued)
    }

    /// Publishes each message with its reason to the dead-letter exchange, on the dead letters' own connection,
    /// and waits for the confirms. A message the broker did not confirm is requeued instead, to be tried again;
    /// returns the tags of those.
    private func deadLetter(_ rejected: [(AMQPDelivery, String, EventRejection.Kind?)], _ amqp: AMQPConnection)
        async throws -> Set<UInt64>
    {
        guard !rejected.isEmpty else { return [] }
        var rejected = rejected
        let messages = rejected.indices.map { index in
            let (delivery, reason, _) = rejected[index]
            let (message, copyFailure) = deadLetterMessage(delivery, reason: reason)
            if let copyFailure { rejected[index].1 = reason + "; " + copyFailure }
            return message
        }
        let outcomes = try await deadLetters.publish(messages)
        var requeued: Set<UInt64> = []
        for ((delivery, reason, kind), outcome) in zip(rejected, outcomes) {
            if outcome == .confirmed {
                metrics.recordDeadLetter(kind)
                logger.notice(
                    "Dead-lettered a message",
                    metadata: [LogKey.rejectionReason: "\(reason)", LogKey.amqpDeliveryTag: "\(delivery.deliveryTag)"])
            } else {
                try await amqp.reject(delivery.deliveryTag, requeue: true)
                requeued.insert(delivery.deliveryTag)
            }
        }
        return requeued
    }

    /// The dead letter of `delivery`: its properties and headers as they came, the reason first among the headers,
    /// and the body kept (the first `maxBodyBytes` of one larger). Properties that leave no room in a frame for the
    /// reason lose their headers instead, and the reason says so (the second value).
    private func deadLetterMessage(_ delivery: AMQPDelivery, reason: String) -> (AMQPOutgoingMessage, String?) {
        let exchange = settings.topology.deadLetterExchange
        do {
            let message = try AMQPOutgoingMessage.forwarding(
                delivery, exchange: exchange, routingKey: delivery.routingKey,
                adding: ["x-rejection-reason": .string(reason)], body: delivery.body)
            return (message, nil)
        } catch {
            let copyFailure = "its headers were dropped: \(error.message)"
            let message = AMQPOutgoingMessage.forwarding(
                delivery, exchange: exchange, routingKey: delivery.routingKey,
                replacingHeadersWith: ["x-rejection-reason": .string(reason + "; " + copyFailure)],
                body: delivery.body)
            return (message, copyFailure)
        }
    }

    /// Waits for a chunk's commit, dead-letters the events the database refused, and acknowledges the chunk.
    private func finish(_ inFlight: InFlight, _ amqp: AMQPConnection) async throws {
        let outcome = try await waitKeepingAlive(inFlight.fold, amqp)
        var requeued = inFlight.requeued
        if !outcome.refused.isEmpty {
            requeued.formUnion(
                try await deadLetter(
                    outcome.refused.map { index, error in
                        (inFlight.deliveries[index], "the database refused the event (\(error))", nil)
                    }, amqp))
        }
        if let lastTag = inFlight.tags.last(where: { !requeued.contains($0) }) {
            try await amqp.ack(lastTag, multiple: true)
        }
        metrics.folded.increment(by: outcome.result.counted)
        metrics.duplicates.increment(by: outcome.result.duplicates)
        metrics.batchSize.record(inFlight.deliveries.count)
        let committed = Timestamp.now.microsecondsSinceEpoch
        lastCommit.store(committed, ordering: .relaxed)
        if outcome.result.counted > 0 { metrics.lastFold.record(Double(committed) / 1e6) }
        if let publishedAt = inFlight.publishedAt {
            metrics.publishToCommit.record(max(0, Double(committed) / 1e6 - Double(publishedAt)))
        }
        logger.debug(
            "Folded a batch",
            metadata: [
                LogKey.batchSize: "\(inFlight.deliveries.count)", LogKey.batchCounted: "\(outcome.result.counted)",
                LogKey.batchDuplicates: "\(outcome.result.duplicates)",
            ])
    }

    /// Waits for `fold`; if it takes long (the database is down), keeps the AMQP connection's heartbeats going,
    /// which librabbitmq only sends from inside its own calls.
    private func waitKeepingAlive(_ fold: ChildTaskResult<DatabaseStage.Outcome>, _ amqp: AMQPConnection)
        async throws -> DatabaseStage.Outcome
    {
        try await withThrowingTaskGroup(of: DatabaseStage.Outcome?.self) { group in
            group.addTask { try await fold.value }
            group.addTask {
                try await Task.sleep(for: .seconds(5))
                while !Task.isCancelled { try await amqp.keepAlive(for: .seconds(1)) }
                return nil
            }
            while let next = try await group.next() {
                if let outcome = next {
                    group.cancelAll()
                    return outcome
                }
            }
            throw CancellationError()
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
