import Basics
import CRabbitMQ

// Publishing with confirms: the messages go out in a window, and `ConfirmTracker` matches the broker's acks and
// nacks to them.
extension AMQPConnection {
    /// Puts the channel in confirm mode: from now on the broker acknowledges every published message.
    public func enableConfirms() throws(AMQPError) {
        let state = try usableState()
        guard !confirmsEnabled else { return }
        amqp_confirm_select(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "enable publisher confirms")
        confirmsEnabled = true
    }

    /// Publishes `messages` with at most `window` of them unconfirmed at any time, and waits up to `timeout`
    /// for the broker to settle each.
    ///
    /// Returns one outcome per message, in order. `mandatory` makes an unroutable message come back as
    /// `.returned` rather than vanish. When the connection fails part way, the messages not yet settled are
    /// `.unconfirmed` and every later call throws; the caller reconnects and publishes them again.
    public func publishConfirmed(
        _ messages: [AMQPOutgoingMessage], window: Int, mandatory: Bool = true, timeout: Duration = .seconds(30)
    ) throws(AMQPError) -> [PublishOutcome] {
        _ = try usableState()
        guard confirmsEnabled else {
            throw AMQPError(.unexpectedFrame, "publisher confirms are not enabled on this channel", isRetriable: false)
        }
        var outcomes = [PublishOutcome](repeating: .unconfirmed, count: messages.count)
        var pending = ConfirmTracker()
        var returned = Set<Int>()
        let deadline = ContinuousClock.now + timeout

        func settle(_ incoming: Incoming) {
            switch incoming {
            case .settled(let tag, let multiple, let outcome):
                for index in pending.settle(tag: tag, multiple: multiple) {
                    outcomes[index] = returned.contains(index) ? .returned : outcome
                }
            case .returned(let message):
                // A return names no sequence number, but comes before the ack of its message: the first
                // unsettled message with the same routing key and body is the one (identical twins are alike).
                if let index = pending.indices.first(where: {
                    !returned.contains($0) && messages[$0].routingKey == message.routingKey
                        && messages[$0].body == message.body
                }) {
                    returned.insert(index)
                }
            case .delivery(let delivery):
                bufferedDeliveries.append(delivery)
            case .other:
                break
            }
        }

        let arena = CArena()
        do {
            for (index, message) in messages.enumerated() {
                while pending.count >= max(window, 1) {
                    guard let incoming = try readIncoming(until: deadline) else { return outcomes }
                    settle(incoming)
                }
                let sequence = try publish(message, mandatory: mandatory, arena: arena)
                pending.add(sequence: sequence, index: index)
            }
            while pending.count > 0 {
                guard let incoming = try readIncoming(until: deadline) else { return outcomes }
                settle(incoming)
            }
        } catch {
            logger.warning(
                "Publishing stopped: the connection failed",
                metadata: [LogKey.error: "\(error.debugDescription)", LogKey.unconfirmed: "\(pending.count)"])
        }
        return outcomes
    }

    /// Sends one message; returns its confirm sequence number (meaningful in confirm mode only). `arena` holds
    /// the C copies of its properties and names until the next message reuses it.
    private func publish(_ message: AMQPOutgoingMessage, mandatory: Bool, arena: CArena) throws(AMQPError) -> UInt64 {
        let state = try usableState()
        arena.recycle()
        var properties =
            message.forwardedProperties.map {
                arena.forwardedProperties(
                    $0, adding: message.properties.headers ?? [:], replacing: message.replacesHeaders)
            } ?? arena.properties(message.properties)
        let status = message.body.withUnsafeBufferPointer { body in
            amqp_basic_publish(
                state, Self.channel, arena.bytes(message.exchange), arena.bytes(message.routingKey),
                mandatory ? 1 : 0, 0, &properties,
                amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
        }
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "publish")) }
        defer { nextPublishSequence += 1 }
        return nextPublishSequence
    }
}

/// How the broker settled one published message.
public enum PublishOutcome: Sendable, Hashable {
    /// `basic.ack`: the broker has taken responsibility for it.
    case confirmed
    /// `basic.nack`: the broker could not take it (a full queue with `reject-publish`, an internal error).
    case nacked
    /// `basic.return`: no queue was bound for its routing key.
    case returned
    /// No answer before the connection failed or the wait ran out: it may or may not have arrived.
    case unconfirmed
}
