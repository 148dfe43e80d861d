import Basics
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
    var bodyLimit = Int.max

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

    /// Connects, runs `body` with the connection, and closes it whatever `body` does.
    public static func withConnection<T>(
        _ configuration: AMQPConfiguration, logger: Logger, isolation: isolated (any Actor)? = #isolation,
        _ body: (AMQPConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connect(configuration, logger: logger)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
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
                        "the broker's certificate was not verified with the authorities of "
                            + "\(configuration.tls?.caCertificatePath ?? "") for host \(node.host)",
                        detail: detail, isRetriable: false))
            default:
                throw fail(
                    AMQPError(.connectionFailed, "could not connect to the broker", detail: detail, isRetriable: true))
            }
        }
        amqp_set_handshake_timeout(state, &timeout)
        amqp_set_rpc_timeout(state, &timeout)
        let login = crabbitmq_login_plain(
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
        func refused(_ what: String, _ path: String) -> AMQPError {
            fail(AMQPError(.connectionFailed, "\(what) could not be loaded from \(path)", isRetriable: false))
        }
        guard amqp_ssl_socket_set_cacert(socket, tls.caCertificatePath) == AMQP_STATUS_OK.rawValue else {
            throw refused("the authorities' certificates", tls.caCertificatePath)
        }
        if let certificate = tls.certificatePath, let key = tls.keyPath,
            amqp_ssl_socket_set_key(socket, certificate, key) != AMQP_STATUS_OK.rawValue
        {
            throw refused("the client certificate and its key", certificate)
        }
        amqp_ssl_socket_set_verify_peer(socket, 1)
        amqp_ssl_socket_set_verify_hostname(socket, 1)
        return socket
    }

    /// Closes the channel and the connection with the AMQP handshake, and ends the connection's thread, waiting for
    /// both. Errors are ignored: the socket is gone either way. Any later call throws `connectionClosed`.
    public nonisolated func close() async {
        await finish()
        await executor.join()
    }

    private func finish() {
        executor.shutdown()
        guard let state else { return }
        if failure == nil {
            _ = amqp_channel_close(state, Self.channel, AMQP_REPLY_SUCCESS)
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        amqp_destroy_connection(state)
        self.state = nil
        failure = failure ?? AMQPError(.connectionClosed, "the connection was closed", isRetriable: true)
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
    func closeError(_ method: amqp_method_t, action: String) -> AMQPError {
        let isConnection = method.id == crabbitmq_connection_close_method
        let (code, text): (UInt16, String)
        if isConnection {
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            (code, text) = (close.reply_code, String(copying: close.reply_text))
            var ok = amqp_connection_close_ok_t()
            if let state { _ = amqp_send_method(state, 0, crabbitmq_connection_close_ok_method, &ok) }
        } else {
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            (code, text) = (close.reply_code, String(copying: close.reply_text))
            var ok = amqp_channel_close_ok_t()
            if let state { _ = amqp_send_method(state, Self.channel, crabbitmq_channel_close_ok_method, &ok) }
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

func statusText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
