import AMQPClient
import Basics

extension AMQPProperties {
    /// The properties of an event (docs/events.md): JSON, persistent, the event id as message id, and the time of
    /// publishing, from which the consumer measures how long events take to be counted.
    public static func event(messageID: String? = nil, publishedAt: Timestamp = .now) -> AMQPProperties {
        var properties = AMQPProperties(contentType: "application/json", deliveryMode: 2, messageID: messageID)
        properties.timestamp = UInt64(clamping: publishedAt.microsecondsSinceEpoch / 1_000_000)
        return properties
    }
}
