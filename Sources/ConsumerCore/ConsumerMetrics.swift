import Metrics
import Shared

/// The consumer's metrics, created once; exported in Prometheus format on `METRICS_PORT`.
public struct ConsumerMetrics: Sendable {
    let received = Counter(label: "coworking_consumer_events_received_total")
    let folded = Counter(label: "coworking_consumer_events_folded_total")
    let duplicates = Counter(label: "coworking_consumer_events_duplicate_total")
    let batchSize = Recorder(label: "coworking_consumer_batch_size", aggregate: true)
    let commitDuration = Timer(label: "coworking_consumer_commit_duration_seconds")
    let lastFold = Gauge(label: "coworking_consumer_last_fold_timestamp_seconds")
    private let deadLettered: [EventRejection.Kind: Counter]
    private let brokerRejected = Counter(
        label: "coworking_consumer_events_dead_lettered_total", dimensions: [("reason", "database_refused")])
    private let amqpReconnects = Counter(label: "coworking_consumer_reconnects_total", dimensions: [("target", "amqp")])
    private let databaseReconnects = Counter(
        label: "coworking_consumer_reconnects_total", dimensions: [("target", "postgres")])

    /// The histogram buckets of the batch size, for the Prometheus factory.
    public static let batchSizeBuckets: [Double] = [1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000]
    public static let batchSizeLabel = "coworking_consumer_batch_size"

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

    func recordReconnect(toDatabase: Bool) {
        (toDatabase ? databaseReconnects : amqpReconnects).increment()
    }
}
