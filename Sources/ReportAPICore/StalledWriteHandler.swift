import NIOCore
import Prometheus

/// Closes a connection whose client has read nothing of an answer for `timeout`: the bytes waiting to be sent pass
/// the channel's high-water mark (it becomes unwritable) and stay there. A client that stops reading a long answer
/// (`user_visits` streamed) would otherwise keep its connection and request task for as long as it likes. Reading
/// even slowly makes the channel writable again and restarts the clock.
final class StalledWriteHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    /// `coworking_api_stalled_connections_closed_total`.
    private let closed: Counter
    private var closing: Scheduled<Void>?

    init(timeout: TimeAmount, closed: Counter) {
        self.timeout = timeout
        self.closed = closed
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            closing?.cancel()
            closing = nil
        } else if closing == nil {
            let (channel, closed) = (context.channel, self.closed)
            closing = context.eventLoop.scheduleTask(in: timeout) {
                closed.increment()
                channel.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing?.cancel()
        closing = nil
        context.fireChannelInactive()
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration / .nanoseconds(1)))
    }
}
