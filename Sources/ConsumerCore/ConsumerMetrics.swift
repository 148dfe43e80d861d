import AMQPClient
import Metrics
import Pipeline

/// The consumer's metrics, created once; exported in Prometheus format on `METRICS_PORT`.
public struct ConsumerMetrics: Sendable {
    let received = Counter(label: "coworking_consumer_events_received_total")
    let folded = Counter(label: "coworking_consumer_events_folded_total")
    let duplicates = Counter(label: "coworking_consumer_events_duplicate_total")
    let batchSize = Recorder(label: "coworking_consumer_batch_size", aggregate: true)
    let commitDuration = Timer(label: "coworking_consumer_commit_duration_seconds")
    let lastFold = Gauge(label: "coworking_consumer_last_fold_timestamp_seconds")
    /// Updated as the consume loop turns (at least twice a second): an alert on it needs no clock arithmetic.
    let sinceLastCommit = Gauge(label: "coworking_consumer_seconds_since_last_commit")
    /// The queue's ready messages, read from the broker every few seconds: what KEDA scales on, with the
    /// unacknowledged ones.
    let queueReady = Gauge(label: "coworking_consumer_queue_ready_messages")
    /// This consumer's deliveries not yet acknowledged (its share of the queue's unacknowledged messages).
    let unacknowledged = Gauge(label: "coworking_consumer_unacknowledged_messages")
    /// How long ago the oldest event of the batch being folded was published, where the publisher stamped it.
    let oldestEventAge = Gauge(label: "coworking_consumer_oldest_event_age_seconds")
    /// From publishing to the commit that counts it, for the oldest stamped event of each batch.
    let publishToCommit = Recorder(label: ConsumerMetrics.publishToCommitLabel, aggregate: true)
    private let deadLettered: [EventRejection.Kind: Counter]
    private let brokerRejected = Counter(
        label: "coworking_consumer_events_dead_lettered_total", dimensions: [("reason", "database_refused")])
    private let databaseReconnects = Counter(
        label: "coworking_consumer_reconnects_total", dimensions: [("target", "postgres")])

    /// The histogram buckets of the batch size, for the Prometheus factory.
    public static let batchSizeBuckets: [Double] = [1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000]
    public static let batchSizeLabel = "coworking_consumer_batch_size"
    /// The buckets of `coworking_consumer_publish_to_commit_seconds`: publishers stamp whole seconds.
    public static let publishToCommitBuckets: [Double] = [1, 2, 5, 10, 30, 60, 120, 300, 900, 3600]
    public static let publishToCommitLabel = "coworking_consumer_publish_to_commit_seconds"

    public init() {
        var deadLettered: [EventRejection.Kind: Counter] = [:]
        for kind in EventRejection.Kind.allCases {
            deadLettered[kind] = Counter(
                label: "coworking_consumer_events_dead_lettered_total", dimensions: [("reason", kind.rawValue)])
        }
        self.deadLettered = deadLettered
    }

    func recordDeadLetter(_ kind: EventRejection.Kind?) {
        (kind.flatMap { deadLettered[$0] } ?? brokerRejected).increment()
    }

    func recordDatabaseReconnect() {
        databaseReconnects.increment()
    }

    /// Counts a connection opened again after one was lost, by the node it reached.
    func recordBrokerReconnect(to node: AMQPConfiguration.Node) {
        Counter(label: "coworking_consumer_reconnects_total", dimensions: [("target", "amqp"), ("node", "\(node)")])
            .increment()
    }
}
