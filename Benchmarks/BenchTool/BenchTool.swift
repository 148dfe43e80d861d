import AMQPClient
import ArgumentParser
import Basics
import ConsumerCore
import Foundation
import FoundationNetworking
import Logging
import Pipeline
import PostgresClient
import ProducerCore
import TestSupport

#if canImport(FoundationNetworking)
#endif

/// Helpers of the benchmark scripts: the same seeded workload, published to a queue or folded straight into the
/// rollups with the consumer's own statements.
@main
struct BenchTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-tool", abstract: "Workloads for scripts/bench-consumer and scripts/bench-freshness.",
        subcommands: [Prefill.self, Fold.self, Probe.self])
}

struct Workload: ParsableArguments {
    @Option(help: "Check-ins to generate.") var count = 300_000
    @Option(help: "Distinct users.") var users: Int32 = 10_000
    @Option(help: "Days the check-ins are spread over, ending now.") var days = 365
    @Option(help: "Seed of the random generator.") var seed: UInt64 = 42

    /// The check-ins, the same for the same options: ids, users, spaces and times all come from the seed.
    func events() -> [Event] {
        var random = SeededGenerator(seed: seed)
        let end = Timestamp.now.microsecondsSinceEpoch.floorDivided(by: 86_400_000_000).quotient * 86_400_000_000
        let span = Int64(days) * 86_400_000_000
        let spaces = ["hq", "annex", "default"]
        return (0..<count).map { _ in
            Event(
                id: .random(using: &random), kind: .checkin, userID: Int32.random(in: 1...users, using: &random),
                occurredAt: Timestamp(microsecondsSinceEpoch: end - Int64.random(in: 1...span, using: &random)),
                spaceID: spaces[Int.random(in: 0..<3, using: &random)])
        }
    }
}

struct Prefill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publishes the workload to EXCHANGE with confirms.")
    @OptionGroup var workload: Workload

    func run() async throws {
        let environment = EnvironmentVariables.process
        let publisher = EventPublisher(
            configuration: try AMQPConfiguration.fromEnvironment(environment),
            exchange: try Topology.fromEnvironment(environment).exchange, logger: Logger(label: "bench"))
        let events = workload.events()
        var counts = EventPublisher.Counts()
        for start in stride(from: 0, to: events.count, by: 10_000) {
            counts += await publisher.publish(
                events[start..<min(start + 10_000, events.count)].map(publisher.message(for:)))
        }
        await publisher.close()
        guard counts.confirmed == events.count else { throw ExitCode.failure }
        print("published \(events.count)")
    }
}

struct Fold: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Folds the workload into the rollups of DB_SCHEMA with the consumer's statements, nothing else.")
    @OptionGroup var workload: Workload
    @Option(help: "Events per transaction.") var batchSize = ConsumerSettings.defaultBatchSize
    @Option(help: "Connections folding at once, batches taken in turn, as the consumer does.")
    var connections = ConsumerSettings.defaultFoldConnections

    func run() async throws {
        let database = try PostgresConfiguration.fromEnvironment(.process, applicationName: "bench-fold")
        var stages: [PostgresConnection] = []
        for _ in 0..<connections {
            stages.append(try await PostgresConnection.connect(database, logger: Logger(label: "bench")))
        }
        let events = workload.events()
        let writer = RollupWriter(totalsSlot: 0)
        let started = ContinuousClock.now
        var inFlight: [Task<Void, any Error>] = []
        for (number, start) in stride(from: 0, to: events.count, by: batchSize).enumerated() {
            // Prepared while the batches before fold, and queued behind its connection's, so that no connection
            // waits for a batch: the database stage's own limit.
            let prepared = writer.prepare(Array(events[start..<min(start + batchSize, events.count)]))
            let connection = stages[number % stages.count]
            inFlight.append(Task { _ = try await connection.withTransaction { try writer.fold(prepared, on: $0) } })
            if inFlight.count > stages.count { try await inFlight.removeFirst().value }
        }
        for fold in inFlight { try await fold.value }
        let seconds = (ContinuousClock.now - started).seconds
        print("\(events.count) \(seconds) \(connections) \(batchSize)")
    }
}

struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publishes probe check-ins, each to a space of its own, and times each from its publisher confirm "
            + "to the first daily_usage answer that counts it; prints one line of milliseconds per probe.")
    @Option(help: "Probes to publish, one after the other.") var count = 50
    @Option(help: "The report API's base URL.") var api = "http://127.0.0.1:15154"
    @Option(help: "A prefix of the probes' spaces, unique to the run.") var prefix: String
    @Option(help: "Milliseconds between two probes.") var pause = 200

    func run() async throws {
        let environment = EnvironmentVariables.process
        let publisher = EventPublisher(
            configuration: try AMQPConfiguration.fromEnvironment(environment),
            exchange: try Topology.fromEnvironment(environment).exchange, logger: Logger(label: "bench"))
        for number in 0..<count {
            let space = "\(prefix)-\(number)"
            guard let url = URL(string: "\(api)/api/reports/daily_usage?tz=UTC&space=\(space)") else {
                throw ValidationError("--api must be a URL such as http://127.0.0.1:5153")
            }
            let probe = Event(id: UUID(), kind: .checkin, userID: 1, occurredAt: .now, spaceID: space)
            guard await publisher.publish([publisher.message(for: probe)]).confirmed == 1 else {
                throw ExitCode.failure
            }
            let confirmed = ContinuousClock.now
            while true {
                let (body, _) = try await URLSession.shared.data(from: url)
                if body.count > 2 { break }
                guard ContinuousClock.now - confirmed < .seconds(30) else { throw ExitCode.failure }
            }
            print(String(format: "%.1f", (ContinuousClock.now - confirmed).seconds * 1e3))
            try await Task.sleep(for: .milliseconds(pause))
        }
        await publisher.close()
    }
}
