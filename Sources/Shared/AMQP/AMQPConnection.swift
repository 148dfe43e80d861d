import CRabbitMQ
import DequeModule
import Glibc
import Logging

/// One AMQP 0-9-1 connection to RabbitMQ with one channel, over librabbitmq.
///
/// The actor runs on a thread of its own (`ThreadExecutor`), the only thread that touches the librabbitmq
/// handle, so its blocking socket reads never hold up Swift's cooperative pool. Each method is one or a few
/// library calls; a caller that needs many in a row (publishing a window of messages and reading their
/// confirms) uses a method that does them all in one hop.
///
/// librabbitmq does not reconnect, and it sends heartbeats only while inside one of its calls: owners keep
/// calling (`nextDelivery(timeout:)` returns after at most its timeout) and open a new connection when a
/// method throws an error whose `isRetriable` is true. Once any call has failed with a closed connection or
/// channel, every later call throws that error.
public actor AMQPConnection {
    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let configuration: AMQPConfiguration
    /// The node this connection is to.
    public nonisolated let node: AMQPConfiguration.Node
    let logger: Logger
    private var state: amqp_connection_state_t?
    /// Why the connection is unusable, once it is.
    private var failure: AMQPError?
    var confirmsEnabled = false
    /// The sequence number the broker gives the next message published in confirm mode.
    var nextPublishSequence: UInt64 = 1
    /// Deliveries read while waiting for confirms, handed out by `nextDelivery(timeout:)` first.
    var bufferedDeliveries = Deque<AMQPDelivery>()

    static let channel: amqp_channel_t = 1
    /// The largest frame this client accepts and sends.
    static let frameMax = 131_072
    /// The largest encoded properties a content header frame holds: the frame less its header and end (8 bytes)
    /// and the class, weight and body size before the properties (12 bytes).
    static let maxPropertiesSize = frameMax - 20
    /// The bytes of a delivery's body kept in memory; the rest is read and discarded (`consume(_:bodyLimit:)`).
    private var bodyLimit = Int.max

    private init(configuration: AMQPConfiguration, node: AMQPConfiguration.Node, logger: Logger) {
        self.executor = ThreadExecutor(name: "amqp")
        self.configuration = configuration
        self.node = node
        self.logger = logger
    }

    /// Opens a connection and its channel to the first of the nodes that answers, within
    /// `configuration.timeoutSeconds` for each step. The nodes are tried in turn from the one after `previous`
    /// (the node of a connection that was lost), or from a random one, so that replicas spread over a cluster. A
    /// refusal that every node would give (credentials, a certificate) ends the attempt at once; otherwise the last
    /// node's error is thrown.
    public static func connect(
        _ configuration: AMQPConfiguration, after previous: AMQPConfiguration.Node? = nil, logger: Logger
    ) async throws -> AMQPConnection {
        let nodes = configuration.nodes
        guard !nodes.isEmpty else {
            throw AMQPError(.connectionFailed, "no broker node is configured", isRetriable: false)
        }
        let first = previous.flatMap { nodes.firstIndex(of: $0).map { $0 + 1 } } ?? Int.random(in: 0..<nodes.count)
        var lastError: AMQPError?
        for offset in 0..<nodes.count {
            let node = nodes[(first + offset) % nodes.count]
            let connection = AMQPConnection(configuration: configuration, node: node, logger: logger)
            do {
                try await connection.open()
                return connection
            } catch let error where !error.isRetriable {
                throw error
            } catch {
                logger.debug("A broker node did not answer", metadata: [LogKey.error: "\(error.debugDescription)"])
                lastError = error
            }
        }
        throw lastError ?? AMQPError(.connectionFailed, "no broker node answered", isRetriable: true)
    }

    // Isolated, so that even the last use of the handle happens on its own thread.
    isolated deinit {
        if let state {
            amqp_destroy_connection(state)
        }
        executor.shutdown()
    }

    /// Whether the connection can still be used.
    public var isOpen: Bool { state != nil && failure == nil }

    /// The local TCP port, which names the connection in RabbitMQ's tools ("127.0.0.1:PORT -> 127.0.0.1:5672").
    public var localPort: Int? {
        guard let state else { return nil }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let status = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(amqp_get_sockfd(state), $0, &length) }
        }
        return status == 0 ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    private func open() throws(AMQPError) {
        guard let state = amqp_new_connection() else {
            throw AMQPError(.connectionFailed, "could not allocate a connection", isRetriable: false)
        }
        self.state = state
        let socket =
            try configuration.tls.map { tls throws(AMQPError) in try tlsSocket(state, tls) }
            ?? amqp_tcp_socket_new(state)
        guard let socket else {
            throw fail(AMQPError(.connectionFailed, "could not create a socket", isRetriable: true))
        }
        var timeout = timeval(tv_sec: configuration.timeoutSeconds, tv_usec: 0)
        let status = amqp_socket_open_noblock(socket, node.host, Int32(node.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            let detail = "\(node): \(statusText(status))"
            switch status {
            case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
                // Trying again cannot help: the certificate or the setting must change.
                throw fail(
                    AMQPError(
                        .connectionFailed,
                        "the broker's certificate was not verified with AMQP_CACERT "
                            + "(\(configuration.tls?.caCertificatePath ?? "")) for host \(node.host)",
                        detail: detail, isRetriable: false))
            default:
                throw fail(
                    AMQPError(.connectionFailed, "could not connect to the broker", detail: detail, isRetriable: true))
            }
        }
        amqp_set_handshake_timeout(state, &timeout)
        amqp_set_rpc_timeout(state, &timeout)
        let login = coworking_amqp_login_plain(
            state, configuration.virtualHost, 0, Int32(Self.frameMax), Int32(configuration.heartbeatSeconds),
            configuration.user, configuration.password)
        try check(login, "log in")
        amqp_channel_open(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "open a channel")
        logger.debug(
            "Connected to RabbitMQ",
            metadata: [
                LogKey.amqpNode: "\(node)",
                LogKey.amqpVirtualHost: "\(configuration.virtualHost)",
            ])
    }

    /// A TLS socket that verifies the broker's certificate chain against `tls.caCertificatePath` and its host name
    /// (librabbitmq's defaults, kept on), presenting a client certificate when one is configured.
    private func tlsSocket(_ state: amqp_connection_state_t, _ tls: AMQPConfiguration.TLS) throws(AMQPError)
        -> OpaquePointer?
    {
        guard let socket = amqp_ssl_socket_new(state) else { return nil }
        func refused(_ setting: String, _ path: String) -> AMQPError {
            fail(AMQPError(.connectionFailed, "\(setting) could not be loaded from \(path)", isRetriable: false))
        }
        guard amqp_ssl_socket_set_cacert(socket, tls.caCertificatePath) == AMQP_STATUS_OK.rawValue else {
            throw refused("AMQP_CACERT", tls.caCertificatePath)
        }
        if let certificate = tls.certificatePath, let key = tls.keyPath,
            amqp_ssl_socket_set_key(socket, certificate, key) != AMQP_STATUS_OK.rawValue
        {
            throw refused("AMQP_CERT with AMQP_KEY", certificate)
        }
        amqp_ssl_socket_set_verify_peer(socket, 1)
        amqp_ssl_socket_set_verify_hostname(socket, 1)
        return socket
    }

    /// Closes the channel and the connection with the AMQP handshake. Errors are ignored: the socket is gone
    /// either way.
    public func close() {
        guard let state else { return }
        if failure == nil {
            _ = amqp_channel_close(state, Self.channel, AMQP_REPLY_SUCCESS)
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        amqp_destroy_connection(state)
        self.state = nil
        failure = failure ?? AMQPError(.connectionClosed, "the connection was closed", isRetriable: true)
    }

    // MARK: Topology

    /// Declares an exchange (durable, not auto-deleted).
    public func declareExchange(_ name: String, type: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_exchange_declare(state, Self.channel, arena.bytes(name), arena.bytes(type), 0, 1, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "declare exchange \(name)")
    }

    /// Declares a durable queue; returns how many messages it holds and how many consumers it has.
    @discardableResult
    public func declareQueue(_ name: String, arguments: AMQPTable = [:]) throws(AMQPError) -> QueueStatus {
        try queueDeclare(name, passive: false, arguments: arguments)
    }

    /// The message and consumer counts of an existing queue (a passive declare).
    public func queueStatus(_ name: String) throws(AMQPError) -> QueueStatus {
        try queueDeclare(name, passive: true, arguments: [:])
    }

    private func queueDeclare(_ name: String, passive: Bool, arguments: AMQPTable) throws(AMQPError) -> QueueStatus {
        let state = try usableState()
        let arena = CArena()
        let ok = amqp_queue_declare(
            state, Self.channel, arena.bytes(name), passive ? 1 : 0, 1, 0, 0, arena.table(arguments))
        try check(amqp_get_rpc_reply(state), "declare queue \(name)")
        guard let ok else {
            throw fail(AMQPError(.unexpectedFrame, "no reply to a queue declaration", isRetriable: true))
        }
        return QueueStatus(messageCount: Int(ok.pointee.message_count), consumerCount: Int(ok.pointee.consumer_count))
    }

    /// Binds `queue` to `exchange` for `routingKey` (`#` for every key of a topic exchange).
    public func bindQueue(_ queue: String, to exchange: String, routingKey: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_queue_bind(
            state, Self.channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "bind queue \(queue)")
    }

    /// Deletes a queue and the messages in it.
    public func deleteQueue(_ name: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_queue_delete(state, Self.channel, arena.bytes(name), 0, 0)
        try check(amqp_get_rpc_reply(state), "delete queue \(name)")
    }

    /// Removes every ready message of a queue; returns how many.
    @discardableResult
    public func purgeQueue(_ name: String) throws(AMQPError) -> Int {
        let state = try usableState()
        let arena = CArena()
        let ok = amqp_queue_purge(state, Self.channel, arena.bytes(name))
        try check(amqp_get_rpc_reply(state), "purge queue \(name)")
        return ok.map { Int($0.pointee.message_count) } ?? 0
    }

    /// Deletes an exchange.
    public func deleteExchange(_ name: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_exchange_delete(state, Self.channel, arena.bytes(name), 0)
        try check(amqp_get_rpc_reply(state), "delete exchange \(name)")
    }

    /// Reads the next frame of interest, or returns nil once `deadline` has passed.
    func readIncoming(until deadline: ContinuousClock.Instant) throws(AMQPError) -> Incoming? {
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return nil }
            guard let incoming = try readFrame(timeout: remaining) else { return nil }
            if case .other = incoming { continue }
            return incoming
        }
    }

    // MARK: Consuming

    /// Limits the unacknowledged deliveries the broker sends this channel to `count`.
    public func setPrefetch(_ count: Int) throws(AMQPError) {
        let state = try usableState()
        amqp_basic_qos(state, Self.channel, 0, UInt16(clamping: count), 0)
        try check(amqp_get_rpc_reply(state), "set the prefetch count")
    }

    /// Starts consuming `queue` with manual acknowledgements; returns the consumer tag. Of a body larger than
    /// `bodyLimit` bytes, only the first `bodyLimit` are kept: the rest is read a frame at a time and discarded, so
    /// that no message, however large, is held whole in memory.
    @discardableResult
    public func consume(_ queue: String, bodyLimit: Int = .max) throws(AMQPError) -> String {
        let state = try usableState()
        self.bodyLimit = bodyLimit
        let arena = CArena()
        let ok = amqp_basic_consume(
            state, Self.channel, arena.bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "consume queue \(queue)")
        return ok.map { String(copying: $0.pointee.consumer_tag) } ?? ""
    }

    /// Stops the broker sending deliveries to `consumerTag`; those already sent still arrive and need an answer.
    public func cancel(_ consumerTag: String) throws(AMQPError) {
        let state = try usableState()
        let arena = CArena()
        amqp_basic_cancel(state, Self.channel, arena.bytes(consumerTag))
        try check(amqp_get_rpc_reply(state), "cancel the consumer")
    }

    /// The next delivery, or nil when none arrives within `timeout`. Confirms read on the way are of no one's
    /// interest here (publishing reads its own) and are dropped.
    public func nextDelivery(timeout: Duration) throws(AMQPError) -> AMQPDelivery? {
        try nextDelivery(until: ContinuousClock.now + timeout)
    }

    private func nextDelivery(until deadline: ContinuousClock.Instant) throws(AMQPError) -> AMQPDelivery? {
        if let delivery = bufferedDeliveries.popFirst() { return delivery }
        while let incoming = try readIncoming(until: deadline) {
            if case .delivery(let delivery) = incoming { return delivery }
        }
        return nil
    }

    /// How long a batch being filled lets deliveries gather once the bytes read so far are used up. Reading them
    /// as they arrived woke this thread every few messages; pausing first wakes it far less often and saves
    /// consumer CPU per event (docs/benchmarks.md), for at most this much more latency in a batch that waits up to
    /// `maxDelay` anyway.
    private static let gatheringPause = Duration.milliseconds(2)

    /// Up to `limit` deliveries in one hop: waits up to `idleTimeout` for the first, then returns when `limit`
    /// have arrived or `maxDelay` has passed since the first. Empty when nothing arrived.
    public func nextDeliveries(limit: Int, maxDelay: Duration, idleTimeout: Duration) throws(AMQPError)
        -> [AMQPDelivery]
    {
        guard let first = try nextDelivery(timeout: idleTimeout) else { return [] }
        var deliveries = [first]
        deliveries.reserveCapacity(limit)
        let deadline = ContinuousClock.now + maxDelay
        while deliveries.count < limit {
            letDeliveriesGather(until: deadline)
            guard let delivery = try nextDelivery(until: deadline) else { break }
            deliveries.append(delivery)
        }
        return deliveries
    }

    /// Sleeps for `gatheringPause`, and not past `deadline`, when nothing read is left to take.
    private func letDeliveriesGather(until deadline: ContinuousClock.Instant) {
        guard bufferedDeliveries.isEmpty, let state, amqp_data_in_buffer(state) == 0, amqp_frames_enqueued(state) == 0
        else { return }
        let pause = min(Self.gatheringPause, deadline - .now)
        if pause > .zero { usleep(UInt32(pause / .microseconds(1))) }
    }

    /// Reads frames for `duration` so that heartbeats flow while the owner is busy elsewhere; deliveries that
    /// arrive meanwhile are kept for `nextDelivery(timeout:)`.
    public func keepAlive(for duration: Duration) throws(AMQPError) {
        let deadline = ContinuousClock.now + duration
        while let incoming = try readIncoming(until: deadline) {
            if case .delivery(let delivery) = incoming { bufferedDeliveries.append(delivery) }
        }
    }

    /// Acknowledges `deliveryTag`, and with `multiple` every earlier unacknowledged delivery too.
    public func ack(_ deliveryTag: UInt64, multiple: Bool) throws(AMQPError) {
        let state = try usableState()
        let status = amqp_basic_ack(state, Self.channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "acknowledge")) }
    }

    /// Rejects one delivery: back to the queue with `requeue`, else to the queue's dead-letter exchange.
    public func reject(_ deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let state = try usableState()
        let status = amqp_basic_reject(state, Self.channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "reject")) }
    }

    // MARK: Frames

    enum Incoming {
        case delivery(AMQPDelivery)
        case settled(tag: UInt64, multiple: Bool, outcome: PublishOutcome)
        case returned(AMQPOutgoingMessage)
        case other
    }

    /// Reads one frame (and the content frames of a message): nil on timeout; throws when the connection or
    /// channel is closed, by the broker or by missed heartbeats.
    private func readFrame(timeout: Duration) throws(AMQPError) -> Incoming? {
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
        case coworking_basic_deliver_method:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let exchange = String(copying: deliver.exchange)
            let routingKey = String(copying: deliver.routing_key)
            let (properties, body, bodySize) = try readContent(state, channel: frame.channel, keeping: bodyLimit)
            return .delivery(
                AMQPDelivery(
                    deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0, exchange: exchange,
                    routingKey: routingKey, encodedProperties: properties, body: body, bodySize: bodySize))
        case coworking_basic_ack_method:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .settled(tag: ack.delivery_tag, multiple: ack.multiple != 0, outcome: .confirmed)
        case coworking_basic_nack_method:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .settled(tag: nack.delivery_tag, multiple: nack.multiple != 0, outcome: .nacked)
        case coworking_basic_return_method:
            let info = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let exchange = String(copying: info.exchange)
            let routingKey = String(copying: info.routing_key)
            // Only the routing key and body tell which message came back; the properties are not needed.
            let (_, body, _) = try readContent(state, channel: frame.channel, keeping: .max)
            return .returned(
                AMQPOutgoingMessage(
                    exchange: exchange, routingKey: routingKey, properties: AMQPProperties(), body: body))
        case coworking_connection_close_method, coworking_channel_close_method:
            throw fail(closeError(method, action: "read from the broker"))
        case coworking_basic_cancel_method:
            throw fail(
                AMQPError(
                    .channelClosed, "the broker cancelled the consumer (was the queue deleted?)", isRetriable: true))
        case coworking_connection_blocked_method:
            logger.warning("RabbitMQ blocked this connection: publishing waits until it has resources again")
            return .other
        case coworking_connection_unblocked_method:
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
    private func readContent(_ state: amqp_connection_state_t, channel: amqp_channel_t, keeping limit: Int)
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

    private func readContentFrame(
        _ state: amqp_connection_state_t, channel: amqp_channel_t, type: Int32, into frame: inout amqp_frame_t
    ) throws(AMQPError) {
        let status = amqp_simple_wait_frame(state, &frame)
        guard status == AMQP_STATUS_OK.rawValue else { throw fail(libraryError(status, "read a message")) }
        // RabbitMQ writes a message's frames together, and this connection uses one channel.
        guard frame.frame_type == type, frame.channel == channel else {
            throw fail(AMQPError(.unexpectedFrame, "a message's content frames were out of order", isRetriable: true))
        }
    }

    // MARK: Errors

    func usableState() throws(AMQPError) -> amqp_connection_state_t {
        if let failure { throw failure }
        guard let state else { throw AMQPError(.connectionClosed, "the connection was closed", isRetriable: true) }
        return state
    }

    /// Records `error` as the reason the connection is unusable and returns it to be thrown. Every failure of a
    /// library call ends the connection: after a lost reply the channel's state is unknown.
    func fail(_ error: AMQPError) -> AMQPError {
        failure = failure ?? error
        return error
    }

    func check(_ reply: amqp_rpc_reply_t, _ action: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw fail(libraryError(reply.library_error, action))
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            throw fail(closeError(reply.reply, action: action))
        default:
            throw fail(AMQPError(.unexpectedFrame, "could not \(action): no reply", isRetriable: true))
        }
    }

    func libraryError(_ status: Int32, _ action: String) -> AMQPError {
        let detail = statusText(status)
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue:
            // A request without an answer leaves the channel in an unknown state: the connection is done.
            return AMQPError(
                .timeout, "the broker did not answer in time to \(action)", detail: detail, isRetriable: true)
        case AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue, AMQP_STATUS_CONNECTION_CLOSED.rawValue,
            AMQP_STATUS_SOCKET_ERROR.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue:
            return AMQPError(
                .connectionClosed, "the connection was lost trying to \(action)", detail: detail, isRetriable: true)
        default:
            return AMQPError(.unexpectedFrame, "could not \(action)", detail: detail, isRetriable: true)
        }
    }

    /// The error for a `connection.close` or `channel.close` from the broker, answered with its `close-ok`.
    private func closeError(_ method: amqp_method_t, action: String) -> AMQPError {
        let isConnection = method.id == coworking_connection_close_method
        let (code, text): (UInt16, String)
        if isConnection {
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            (code, text) = (close.reply_code, String(copying: close.reply_text))
            var ok = amqp_connection_close_ok_t()
            if let state { _ = amqp_send_method(state, 0, coworking_connection_close_ok_method, &ok) }
        } else {
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            (code, text) = (close.reply_code, String(copying: close.reply_text))
            var ok = amqp_channel_close_ok_t()
            if let state { _ = amqp_send_method(state, Self.channel, coworking_channel_close_ok_method, &ok) }
        }
        let detail = "\(code) \(text)"
        switch Int32(code) {
        case AMQP_ACCESS_REFUSED, AMQP_NOT_ALLOWED:
            return AMQPError(
                .accessRefused, "the broker refused access trying to \(action)", detail: detail, isRetriable: false)
        case _ where isConnection:
            return AMQPError(
                .connectionClosed, "the broker closed the connection trying to \(action)", detail: detail,
                isRetriable: true)
        default:
            return AMQPError(
                .channelClosed, "the broker closed the channel trying to \(action)", detail: detail, isRetriable: false)
        }
    }
}

/// How many messages a queue holds and how many consumers it has.
public struct QueueStatus: Sendable, Equatable {
    public var messageCount: Int
    public var consumerCount: Int

    public init(messageCount: Int, consumerCount: Int) {
        self.messageCount = messageCount
        self.consumerCount = consumerCount
    }
}

private func statusText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
