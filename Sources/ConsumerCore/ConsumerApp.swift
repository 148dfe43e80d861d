import Basics
import Hummingbird
import Logging
import Pipeline
import Prometheus
import ServiceLifecycle

/// Builds the consumer's services: the consumer itself and the HTTP server of its probes and metrics.
public enum ConsumerApp {
    /// The service group `consumer run` runs; SIGTERM and SIGINT shut it down gracefully, and what is still
    /// running after `SHUTDOWN_DEADLINE_S` is cancelled.
    public static func buildServiceGroup(
        settings: ConsumerSettings, registry: PrometheusCollectorRegistry, logger: Logger
    ) -> ServiceGroup {
        let metrics = ConsumerMetrics()
        let consumer = RollupConsumer(settings: settings, logger: logger, metrics: metrics)
        let probes = buildProbeServer(consumer: consumer, settings: settings, registry: registry, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: consumer, successTerminationBehavior: .gracefullyShutdownGroup),
            .init(
                service: QueueDepthGauge(
                    configuration: settings.amqp, queue: settings.topology.queue, metrics: metrics, logger: logger)),
            .init(service: MemberCompaction(configuration: settings.database, logger: logger)),
            .init(service: probes),
        ]
        if !settings.retention.isEmpty {
            services.append(
                .init(
                    service: Retention(configuration: settings.database, horizons: settings.retention, logger: logger)))
        }
        var configuration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = settings.shutdownDeadline
        return ServiceGroup(configuration: configuration)
    }

    /// `/health_check` (the process answers), `/readiness_check` (consuming, and no fault of the database keeps the
    /// folds waiting; else 503 `failed: ` and why) and `/metrics`, on `METRICS_PORT`.
    public static func buildProbeServer(
        consumer: RollupConsumer, settings: ConsumerSettings, registry: PrometheusCollectorRegistry, logger: Logger
    ) -> some Service {
        let router = Router()
        router.get("health_check") { _, _ in "ok" }
        router.get("readiness_check") { _, _ -> Response in
            guard let unreadiness = consumer.unreadiness else {
                return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ok")))
            }
            return Response(
                status: .serviceUnavailable,
                body: ResponseBody(byteBuffer: ByteBuffer(string: "failed: \(unreadiness)")))
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(settings.bindAddress, port: settings.metricsPort), serverName: nil),
            onServerRunning: { channel in
                logger.info(
                    "Serving probes and metrics",
                    metadata: [LogKey.httpAddress: "\(channel.localAddress.map { "\($0)" } ?? "")"])
            },
            logger: logger.forFramework)
    }

    /// A Prometheus metrics factory with the consumer's histogram buckets, for `MetricsSystem.bootstrap`.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets[ConsumerMetrics.batchSizeLabel] = ConsumerMetrics.batchSizeBuckets
        factory.valueHistogramBuckets[ConsumerMetrics.publishToCommitLabel] = ConsumerMetrics.publishToCommitBuckets
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
            .seconds(5),
        ]
        return factory
    }
}
