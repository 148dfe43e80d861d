import Basics
import Logging
import PostgresClient
import Prometheus
import ServiceLifecycle
import Synchronization

/// Tells the report API's caches when the rollups change. A database connection of its own listens on
/// `coworking_folds`, where PostgreSQL signals every fold at its commit (schema version 4), and each signal for this
/// API's schema moves `generation` on: a cached answer computed at an earlier generation is not served again.
///
/// The signal is heard from the primary (LISTEN is refused on a standby), and with each signal the primary's version of
/// the rollups is read there: an API that reads its reports from a standby keeps an answer only once the standby has
/// replayed that version (`primaryVersion`).
///
/// While the connection is down, `generation` is nil, the caches fall back to their lifetime (`REPORT_CACHE_MS`), and
/// `coworking_api_fold_signal_up` is 0; the connection is opened again with capped backoff, and the generation moves
/// on then too, since signals may have been missed meanwhile.
public final class FoldSignal: Service, Sendable {
    /// The channel the consumer's folds are signalled on.
    public static let channel = "coworking_folds"

    private struct State {
        var generation: UInt64 = 0
        var primaryVersion: Int64 = 0
        var isListening = false
        var waiters: [CheckedContinuation<UInt64, Never>] = []
    }

    private let configuration: PostgresConfiguration
    private let logger: Logger
    private let state = Mutex(State())
    private let up: Gauge
    private let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))

    public init(configuration: PostgresConfiguration, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.configuration = configuration.primary
        self.logger = logger
        self.up = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "coworking", subsystem: "api", metricName: "fold_signal", unitName: "up",
                helpText: "1 while the API hears every fold's commit, 0 while its caches fall back to REPORT_CACHE_MS"))
    }

    /// The number of changes seen since the API started, or nil while the signal is not heard.
    public var generation: UInt64? {
        state.withLock { $0.isListening ? $0.generation : nil }
    }

    /// The rollups' version on the primary when the signal was last heard, or nil while it is not heard.
    public var primaryVersion: Int64? {
        state.withLock { $0.isListening ? $0.primaryVersion : nil }
    }

    /// Waits until the signal is heard at a generation other than `seen` (nil: any), and returns it: tests wait
    /// for a fold's signal this way instead of for some time.
    public func generation(after seen: UInt64?) async -> UInt64 {
        await withCheckedContinuation { continuation in
            let current: UInt64? = state.withLock { state in
                guard state.isListening, state.generation != seen else {
                    state.waiters.append(continuation)
                    return nil
                }
                return state.generation
            }
            if let current { continuation.resume(returning: current) }
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.listenUntilCancelled() }
    }

    /// Listens, and opens the connection again whenever it fails, until the task is cancelled.
    private func listenUntilCancelled() async {
        _ = try? await backoff.retrying(
            isRetriable: { _ in true },
            failed: { error, _, delay in
                stopListening()
                logger.warning(
                    "Lost the signal of folds; caches fall back to their lifetime until it is back",
                    metadata: [LogKey.error: "\(String(reflecting: error))", LogKey.delay: "\(delay)"])
            }
        ) {
            let connection = try await PostgresConnection.connect(configuration, logger: logger)
            do {
                try await listen(on: connection)
            } catch {
                await connection.close()
                throw error
            }
        }
        stopListening()
    }

    /// Listens until the connection fails or the task is cancelled (both thrown).
    private func listen(on connection: PostgresConnection) async throws -> Never {
        try await connection.listen(Self.channel)
        // Read after LISTEN, so that no fold commits unseen between the two.
        let version = try await Freshness.read(on: connection).version
        up.set(1.0)
        // Heard again: whatever was signalled meanwhile is unknown, so the cached answers are too.
        advance(primaryVersion: version)
        while !Task.isCancelled {
            let received = try await connection.notifications(waitingUpTo: .seconds(1))
            if received.contains(where: { $0.payload == configuration.schema }) {
                advance(primaryVersion: try await Freshness.read(on: connection).version)
            }
        }
        throw CancellationError()
    }

    private func stopListening() {
        up.set(0.0)
        state.withLock { $0.isListening = false }
    }

    private func advance(primaryVersion: Int64) {
        let (generation, waiters) = state.withLock { state in
            state.generation += 1
            state.primaryVersion = primaryVersion
            state.isListening = true
            defer { state.waiters.removeAll() }
            return (state.generation, state.waiters)
        }
        for waiter in waiters { waiter.resume(returning: generation) }
    }
}
