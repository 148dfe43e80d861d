// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "coworking-analytics",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "consumer", targets: ["Consumer"]),
        .executable(name: "report-api", targets: ["ReportAPI"]),
        .executable(name: "producer", targets: ["Producer"]),
        .library(name: "ProducerCore", targets: ["ProducerCore"]),
        .executable(name: "bench-tool", targets: ["BenchTool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Sources/Shared: what the three programs share, as targets that each know only what they must. The two
        // client layers know AMQP and PostgreSQL and nothing of the pipeline; the pipeline's model (events, their
        // topology, settings, rollups' shapes) is built on them.
        .systemLibrary(
            name: "CRabbitMQ",
            path: "Sources/Shared/CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            path: "Sources/Shared/CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // Threads, retries, settings, instants and log keys: what both client layers and the programs use.
        .target(
            name: "Basics",
            path: "Sources/Shared/Basics"
        ),
        // RabbitMQ through librabbitmq.
        .target(
            name: "AMQPClient",
            dependencies: [
                "Basics",
                "CRabbitMQ",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Shared/AMQP"
        ),
        // PostgreSQL through libpq.
        .target(
            name: "PostgresClient",
            dependencies: [
                "Basics",
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Shared/Postgres"
        ),
        // The pipeline's events, topology, settings and rollups' shapes, and how its programs start and stop.
        .target(
            name: "Pipeline",
            dependencies: [
                "AMQPClient",
                "Basics",
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Shared/Pipeline"
        ),
        .target(
            name: "ConsumerCore",
            dependencies: [
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "Consumer",
            dependencies: [
                "ConsumerCore",
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "ReportAPICore",
            dependencies: [
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("openapi.json"), .copy("Dashboard")]
        ),
        .executableTarget(
            name: "ReportAPI",
            dependencies: [
                "ReportAPICore",
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "ProducerCore",
            dependencies: [
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "Producer",
            dependencies: [
                "ProducerCore",
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // What tests and benchmarks share and the programs do not need.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport"
        ),
        .executableTarget(
            name: "BenchTool",
            dependencies: [
                "ConsumerCore",
                "ProducerCore",
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                "TestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/BenchTool"
        ),
        .testTarget(
            name: "SharedTests",
            dependencies: [
                "AMQPClient", "Basics", "Pipeline", "PostgresClient", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ConsumerTests",
            dependencies: ["Basics", "ConsumerCore", "Pipeline", "PostgresClient"]
        ),
        .testTarget(
            name: "ReportAPICoreTests",
            dependencies: [
                "ReportAPICore",
                "AMQPClient",
                "Basics",
                "Pipeline",
                "PostgresClient",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // What the suites against the real servers share: harnesses, fixtures, the programs as processes.
        .target(
            name: "IntegrationSupport",
            dependencies: integrationDependencies,
            path: "Tests/IntegrationSupport"
        ),
        // The suites against the real servers, one target per phase of scripts/test: IntegrationTests run in parallel;
        // ServerFaultTests restart the shared servers or change their settings, so they run alone, one test at a time;
        // StandbyTests need the standby and the cluster that scripts/services cluster-up starts; NodeLossTests kill
        // cluster nodes and run on request.
        .testTarget(name: "IntegrationTests", dependencies: integrationDependencies + ["IntegrationSupport"]),
        .testTarget(name: "ServerFaultTests", dependencies: integrationDependencies + ["IntegrationSupport"]),
        .testTarget(name: "StandbyTests", dependencies: integrationDependencies + ["IntegrationSupport"]),
        .testTarget(name: "NodeLossTests", dependencies: integrationDependencies + ["IntegrationSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

/// What the integration suites and their support import.
var integrationDependencies: [Target.Dependency] {
    [
        "CRabbitMQ", "ConsumerCore", "ProducerCore", "ReportAPICore", "AMQPClient", "Basics", "Pipeline",
        "PostgresClient", "TestSupport",
        .product(name: "HummingbirdTesting", package: "hummingbird"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Prometheus", package: "swift-prometheus"),
    ]
}
