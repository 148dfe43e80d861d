import Basics
import CRabbitMQ
import Glibc

// Reading frames: deliveries, publisher confirms and returns, and the broker's closing of the channel or connection.
extension AMQPConnection {
    /// Reads the next frame of interest, or returns nil once `deadline` has passed and no frame is left to read.
    func readIncoming(until deadline: ContinuousClock.Instant) throws(AMQPError) -> Incoming? {
        while true {
            // Once the deadline has passed, the frames that have arrived are still read, without waiting.
            let remaining = max(deadline - ContinuousClock.now, .zero)
            guard let incoming = try readFrame(timeout: remaining) else { return nil }
            if case .other = incoming { continue }
            return incoming
        }
    }

    enum Incoming {
        case delivery(AMQPDelivery)
        case settled(tag: UInt64, multiple: Bool, outcome: PublishOutcome)
        case returned(AMQPOutgoingMessage)
        case other
    }

    /// Reads one frame (and the content frames of a message): nil on timeout; throws when the connection or
    /// channel is closed, by the broker or by missed heartbeats.
    func readFrame(timeout: Duration) throws(AMQPError) -> Incoming? {
        let state = try usableState()
        amqp_maybe_release_buffers(state)
        var frame = amqp_frame_t()
        var wait = timeval(timeout)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &wait)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "read from the broker")) }
        guard frame.frame_type == AMQP_FRAME_METHOD else { return .other }
        let method = frame.payload.method
        switch method.id {
        case crabbitmq_basic_deliver_method:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let exchange = String(copying: deliver.exchange)
            let routingKey = String(copying: deliver.routing_key)
            let (properties, body, bodySize) = try readContent(state, channel: frame.channel, keeping: bodyLimit)
            return .delivery(
                AMQPDelivery(
                    deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0, exchange: exchange,
                    routingKey: routingKey, encodedProperties: properties, body: body, bodySize: bodySize))
        case crabbitmq_basic_ack_method:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .settled(tag: ack.delivery_tag, multiple: ack.multiple != 0, outcome: .confirmed)
        case crabbitmq_basic_nack_method:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .settled(tag: nack.delivery_tag, multiple: nack.multiple != 0, outcome: .nacked)
        case crabbitmq_basic_return_method:
            let info = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let exchange = String(copying: info.exchange)
            let routingKey = String(copying: info.routing_key)
            // Only the routing key and body tell which message came back; the properties are not needed.
            let (_, body, _) = try readContent(state, channel: frame.channel, keeping: .max)
            return .returned(
                AMQPOutgoingMessage(
                    exchange: exchange, routingKey: routingKey, properties: AMQPProperties(), body: body))
        case crabbitmq_connection_close_method, crabbitmq_channel_close_method:
            throw fail(closeError(method, action: "read from the broker"))
        case crabbitmq_basic_cancel_method:
            throw fail(
                AMQPError(
                    .channelClosed, "the broker cancelled the consumer (was the queue deleted?)", isRetriable: true))
        case crabbitmq_connection_blocked_method:
            logger.warning("RabbitMQ blocked this connection: publishing waits until it has resources again")
            return .other
        case crabbitmq_connection_unblocked_method:
            logger.notice("RabbitMQ unblocked this connection")
            return .other
        default:
            return .other
        }
    }

    /// Reads the header and body frames that follow a `basic.deliver` or `basic.return`: the properties as
    /// encoded, the body's first `limit` bytes, and its declared size. The frames are released as they are read,
    /// so a body of any size takes the memory of one frame beyond what is kept. (`amqp_read_message` would also
    /// copy the decoded properties, which most deliveries never need, and hold the whole body.)
    func readContent(_ state: amqp_connection_state_t, channel: amqp_channel_t, keeping limit: Int)
        throws(AMQPError) -> (properties: [UInt8], body: [UInt8], bodySize: Int)
    {
        var frame = amqp_frame_t()
        try readContentFrame(state, channel: channel, type: AMQP_FRAME_HEADER, into: &frame)
        // librabbitmq decoded the properties by the header's class; `AMQPProperties(decoding:)` decodes them as
        // `basic` properties, which they are known to be only once the class is checked here.
        guard frame.payload.properties.class_id == AMQP_BASIC_CLASS else {
            throw fail(AMQPError(.unexpectedFrame, "a message's header was not of the basic class", isRetriable: true))
        }
        let properties = [UInt8](copying: frame.payload.properties.raw)
        let size = Int(frame.payload.properties.body_size)
        var body: [UInt8] = []
        body.reserveCapacity(min(size, limit))
        var read = 0
        while read < size {
            amqp_maybe_release_buffers_on_channel(state, channel)
            try readContentFrame(state, channel: channel, type: AMQP_FRAME_BODY, into: &frame)
            let fragment = frame.payload.body_fragment
            guard let start = fragment.bytes, fragment.len > 0, read + fragment.len <= size else {
                throw fail(
                    AMQPError(.unexpectedFrame, "a message body did not match its declared size", isRetriable: true))
            }
            let kept = min(fragment.len, max(limit - body.count, 0))
            if kept > 0 { body.append(contentsOf: UnsafeRawBufferPointer(start: start, count: kept)) }
            read += fragment.len
        }
        return (properties, body, size)
    }

    func readContentFrame(
        _ state: amqp_connection_state_t, channel: amqp_channel_t, type: Int32, into frame: inout amqp_frame_t
    ) throws(AMQPError) {
        let status = amqp_simple_wait_frame(state, &frame)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "read a message")) }
        // RabbitMQ writes a message's frames together, and this connection uses one channel.
        guard frame.frame_type == type, frame.channel == channel else {
            throw fail(AMQPError(.unexpectedFrame, "a message's content frames were out of order", isRetriable: true))
        }
    }
}
