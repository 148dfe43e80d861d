/// The metadata keys of log messages, in one place so that they stay consistent and searchable. The pipeline adds
/// its own (`LogKey+Pipeline.swift`).
public enum LogKey {
    public static let error = "error"
    public static let amqpNode = "amqp.node"
    public static let amqpVirtualHost = "amqp.vhost"
    public static let amqpDeliveryTag = "amqp.delivery_tag"
    public static let unconfirmed = "amqp.unconfirmed"
    public static let publishOutcome = "amqp.publish_outcome"
    public static let amqpQueue = "amqp.queue"
    public static let amqpRoutingKey = "amqp.routing_key"
    public static let notice = "db.notice"
    public static let httpAddress = "http.address"
    public static let attempt = "retry.attempt"
    public static let delay = "retry.delay"
}
