import NIOCore
import Synchronization

/// Notices a client that closed its connection while its request is computed, so that the computation, and the
/// query it runs in PostgreSQL, is cancelled rather than left to run to the statement timeout for nobody.
///
/// A channel handler per connection (`handler()`, one of the HTTP server's additional handlers) hears the end of the
/// client's input (the server allows half-closed connections, so a client's close arrives as `inputClosed`) or the
/// connection's end, and ends the waits of the requests on that connection.
public final class ClientDisconnects: Sendable {
    /// The connections open now, by identity, each with the requests waiting on it.
    private let connections = Mutex<[ObjectIdentifier: Connection]>([:])

    private struct Connection {
        var isClosed = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let nextWaiter = Atomic<Int>(0)

    public init() {}

    /// A handler for one new connection.
    func handler() -> Handler { Handler(disconnects: self) }

    /// Runs `operation`, cancelled as soon as the client of `channel` goes away; then throws `CancellationError`.
    /// Without a handler on the channel (a test's router), `operation` simply runs.
    func whileConnected<T: Sendable>(
        _ channel: any Channel, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let key = ObjectIdentifier(channel)
        guard connections.withLock({ $0[key] != nil }) else { return try await operation() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                await self.waitForClose(key)
                return nil
            }
            defer { group.cancelAll() }
            guard case .some(.some(let value)) = try await group.next() else { throw CancellationError() }
            return value
        }
    }

    /// Returns once the client of connection `key` has gone, or the waiting task is cancelled.
    private func waitForClose(_ key: ObjectIdentifier) async {
        let id = nextWaiter.add(1, ordering: .relaxed).newValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let closed = connections.withLock { connections -> Bool in
                    guard let connection = connections[key], !connection.isClosed, !Task.isCancelled else {
                        return true
                    }
                    connections[key]?.waiters[id] = continuation
                    return false
                }
                if closed { continuation.resume() }
            }
        } onCancel: {
            connections.withLock { $0[key]?.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    private func opened(_ key: ObjectIdentifier) {
        connections.withLock { $0[key] = Connection() }
    }

    private func closed(_ key: ObjectIdentifier, forever: Bool) {
        let waiters = connections.withLock { connections -> [CheckedContinuation<Void, Never>] in
            let waiters = connections[key].map { Array($0.waiters.values) } ?? []
            if forever { connections[key] = nil } else { connections[key] = Connection(isClosed: true) }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Watches one connection for its client's close.
    final class Handler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        private let disconnects: ClientDisconnects

        init(disconnects: ClientDisconnects) {
            self.disconnects = disconnects
        }

        func handlerAdded(context: ChannelHandlerContext) {
            disconnects.opened(ObjectIdentifier(context.channel))
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, event == .inputClosed {
                disconnects.closed(ObjectIdentifier(context.channel), forever: false)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            disconnects.closed(ObjectIdentifier(context.channel), forever: true)
        }
    }
}
