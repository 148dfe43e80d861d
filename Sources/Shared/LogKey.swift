import Logging

/// The metadata keys of every log message, in one place so that they stay consistent and searchable.
public enum LogKey {
    public static let error = "error"
    public static let amqpNode = "amqp.node"
    public static let amqpVirtualHost = "amqp.vhost"
    public static let amqpDeliveryTag = "amqp.delivery_tag"
    public static let unconfirmed = "amqp.unconfirmed"
    public static let rejectionReason = "event.rejection_reason"
    public static let amqpQueue = "amqp.queue"
    public static let amqpRoutingKey = "amqp.routing_key"
    public static let batchSize = "batch.size"
    public static let batchCounted = "batch.counted"
    public static let batchDuplicates = "batch.duplicates"
    public static let notice = "db.notice"
    public static let schemaVersion = "schema.version"
    public static let zonesConfigured = "zones.configured"
    public static let zonesRecorded = "zones.recorded"
    public static let httpAddress = "http.address"
    public static let attempt = "retry.attempt"
    public static let delay = "retry.delay"
    public static let databaseFault = "db.fault"
    public static let waited = "db.waited"
}
