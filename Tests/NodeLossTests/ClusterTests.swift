import Basics
import ConsumerCore
import Foundation
import FoundationNetworking
import IntegrationSupport
import Pipeline
import ProducerCore
import Synchronization
import Testing

#if canImport(FoundationNetworking)
#endif

/// The loss of RabbitMQ nodes under the pipeline, on the three-node cluster that `scripts/services cluster-up` starts.
/// Nodes are killed and started again, so this suite runs alone, after the others, and only with
/// `scripts/test --node-loss`: on Debian's RabbitMQ 3.10.8 a quorum queue that had lost its leader once made no
/// progress, with two of its three members up, until the killed node returned (docs/deploy.md).
@Suite(.serialized)
struct ClusterTests {

    // MARK: Node loss

    @Test func killingTheQueuesLeaderAndThenAConsumersNodeMidStreamLosesAndDoublesNothing() async throws {
        try await ConsumerHarness.with(
            amqpURL: TestServers.variable("CLUSTER_AMQP_URL"), initialGroupSize: 3
        ) { harness in
            let cluster = try ClusterNodes()
            #expect(try await cluster.members(of: harness.topology.queue).sorted() == [1, 2, 3])
            let timeline = Timeline()
            let events = workload(events: 200_000, users: 2_000, seed: 22)
            let logs = FileManager.default.temporaryDirectory.appendingPathComponent(TestServers.uniqueName("cluster"))
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            let consumers = try (0..<3).map { index in
                let log = logs.appendingPathComponent("consumer-\(index).log")
                #expect(FileManager.default.createFile(atPath: log.path, contents: nil))
                let metricsPort = TestServers.freePort()
                return (
                    process: try Programs.startConsumer(
                        harness, changing: ["LOG_LEVEL": "info", "METRICS_PORT": String(metricsPort)],
                        standardError: try FileHandle(forWritingTo: log)),
                    log: log, metricsPort: metricsPort
                )
            }
            defer {
                for consumer in consumers where consumer.process.isRunning {
                    kill(consumer.process.processIdentifier, SIGKILL)
                }
                TestServers.startStoppedNodes()
            }
            /// The nodes each consumer consumed from, in order, as its log says.
            func consumedNodes() throws -> [[Int]] {
                try consumers.map {
                    try ClusterNodes.consumingNodes(inLog: String(contentsOf: $0.log, encoding: .utf8))
                }
            }
            let database = try await harness.database()
            func counted() async throws -> Int {
                try await database.query("SELECT count(*) FROM counted_events")[0].int(0)
            }

            // The producer: the one `producer` uses, 2,000 check-ins a second, until told to stop.
            let publisher = EventPublisher(
                configuration: try harness.amqp, exchange: harness.topology.exchange, maxAttempts: 20,
                logger: TestServers.logger)
            let stop = StopFlag()
            let publishing = Task { [events] in
                var sent = 0
                var counts = EventPublisher.Counts()
                while sent < events.count, !stop.isSet {
                    let chunk = events[sent..<min(sent + 200, events.count)]
                    counts += await publisher.publish(chunk.map(publisher.message(for:)))
                    sent += chunk.count
                    try? await Task.sleep(for: .milliseconds(100))
                }
                await publisher.close()
                return (sent: sent, counts: counts)
            }
            timeline.note("3 consumers and the producer started")
            try await harness.waitUntilCounted(4_000)

            /// Kills `node` (described by `role`), and notes how soon the consumers resume.
            func lose(_ node: Int, _ role: String) async throws {
                let before = try consumedNodes()
                timeline.note(
                    "\(try await counted()) counted; \(role) is node \(node); consumers on nodes "
                        + "\(before.map { "\($0.last ?? 0)" }.joined(separator: ", "))")
                try cluster.kill(node: node)
                let killed = timeline.note("SIGKILL node \(node)")
                try await measureResume(
                    after: killed, of: before, node: node, consumedNodes: consumedNodes, counted: counted,
                    timeline: timeline)
            }

            // One kill: the node that leads the queue, then the same node started again.
            let leader = try await cluster.leader(of: harness.topology.queue)
            try await lose(leader, "the queue's leader")
            try await Task.sleep(for: .seconds(3))
            TestServers.startStoppedNodes()
            timeline.note(
                "node \(leader) started again; the queue's leader is node "
                    + "\(try await cluster.leader(of: harness.topology.queue))")
            try await harness.waitUntilCounted(try await counted() + 4_000)

            // The other: a node that a consumer is connected to.
            let consumersNode = try #require(try consumedNodes().compactMap(\.last).first)
            try await lose(consumersNode, "a consumer's node")
            try await Task.sleep(for: .seconds(3))
            stop.set()
            let (sent, counts) = await publishing.value
            timeline.note("producer stopped: \(sent) published, \(counts.confirmed) confirmed")
            TestServers.startStoppedNodes()
            timeline.note("node \(consumersNode) started again")

            #expect(counts == EventPublisher.Counts(published: sent, confirmed: sent), "every event was confirmed")
            try await harness.waitUntilDrained(counted: sent, timeout: .seconds(120))
            timeline.note("drained: \(try await counted()) counted")
            // Each consumer counted every reconnection under the node it went to.
            for (consumer, nodes) in zip(consumers, try consumedNodes()) {
                let moves: [String: Int] = Dictionary(
                    nodes.dropFirst().map { ("127.0.0.1:\(5700 + $0)", 1) }, uniquingKeysWith: +)
                #expect(try await ClusterNodes.amqpReconnects(metricsPort: consumer.metricsPort) == moves)
            }
            for consumer in consumers {
                Programs.stop(consumer.process)
                #expect(consumer.process.terminationReason == .exit)
                #expect(consumer.process.terminationStatus == 0)
            }
            print(timeline.text)

            #expect(
                try await harness.storedRollups()
                    == ExpectedRollups(events: Array(events[..<sent]), zones: harness.zones))
            #expect(try await harness.deadLetters().isEmpty, "redelivered events are folded, not dead-lettered")
            try FileManager.default.removeItem(at: logs)
        }
    }

    /// Waits until every consumer that was on `node` consumes again from another, and the count of events grows
    /// again; notes how long each took.
    private func measureResume(
        after killed: ContinuousClock.Instant, of before: [[Int]], node: Int, consumedNodes: () throws -> [[Int]],
        counted: () async throws -> Int, timeline: Timeline
    ) async throws {
        let countedAtKill = try await counted()
        let moving = before.indices.filter { before[$0].last == node }
        var resumed: Set<Int> = []
        var counting = false
        let deadline = killed + .seconds(60)
        while ContinuousClock.now < deadline, resumed.count < moving.count || !counting {
            let now = try consumedNodes()
            for index in moving where !resumed.contains(index) && now[index].count > before[index].count {
                resumed.insert(index)
                timeline.note(
                    "consumer \(index) consumes from node \(now[index].last ?? 0), "
                        + "\(timeline.seconds(since: killed)) s after the kill")
            }
            if !counting, try await counted() > countedAtKill + 500 {
                counting = true
                timeline.note("counting again (500 more events) \(timeline.seconds(since: killed)) s after the kill")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(resumed.count == moving.count, "every consumer of node \(node) resumed on another")
        #expect(counting, "events were counted again after node \(node) was lost")
    }

}

/// The three nodes of `scripts/services cluster-up`, seen through their management API and their pid files.
struct ClusterNodes {
    let managementPorts: [Int]

    init() throws {
        managementPorts = try TestServers.variable("CLUSTER_MANAGEMENT_PORTS").split(separator: ",").compactMap {
            Int($0)
        }
    }

    /// Node n's number from its name, `rabbit-node<n>@localhost`.
    static func number(ofNode name: String) -> Int? {
        name.split(separator: "@").first.flatMap { Int($0.drop { !$0.isNumber }) }
    }

    /// The nodes a consumer's log says it consumed from, in order: the AMQP port of "Consuming events" lines,
    /// 5701 to 5703, as node numbers.
    static func consumingNodes(inLog log: String) -> [Int] {
        log.split(separator: "\n").filter { $0.contains("Consuming events") }.compactMap { line in
            line.firstMatch(of: /127\.0\.0\.1:570(\d)/).flatMap { Int($0.1) }
        }
    }

    /// A consumer's `coworking_consumer_reconnects_total{target="amqp"}` by node, from its metrics.
    static func amqpReconnects(metricsPort: Int) async throws -> [String: Int] {
        let url = try #require(URL(string: "http://127.0.0.1:\(metricsPort)/metrics"))
        let (data, _) = try await URLSession.shared.data(from: url)
        var reconnects: [String: Int] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("coworking_consumer_reconnects_total{") && line.contains(#"target="amqp""#) {
            guard let match = line.firstMatch(of: /node="([^"]+)"\} (\d+)/), let count = Int(match.2) else { continue }
            reconnects[String(match.1)] = count
        }
        return reconnects
    }

    /// A queue's JSON from the management API of the first node that answers.
    func queue(_ name: String) async throws -> [String: Any] {
        for port in managementPorts {
            var request = URLRequest(url: try #require(URL(string: "http://127.0.0.1:\(port)/api/queues/%2F/\(name)")))
            request.timeoutInterval = 2
            request.setValue(
                "Basic " + Data("guest:guest".utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
            guard let (data, response) = try? await URLSession.shared.data(for: request),
                (response as? HTTPURLResponse)?.statusCode == 200,
                let queue = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            return queue
        }
        throw ClusterError("no node's management API answered for queue \(name)")
    }

    /// The node numbers holding the quorum queue's members.
    func members(of queue: String) async throws -> [Int] {
        ((try await self.queue(queue)["members"] as? [String]) ?? []).compactMap(Self.number(ofNode:))
    }

    /// The node that leads the quorum queue, once one is elected.
    func leader(of queue: String) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let name = try await self.queue(queue)["leader"] as? String, let node = Self.number(ofNode: name) {
                return node
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ClusterError("queue \(queue) has no leader")
    }

    /// SIGKILL to node n's Erlang VM, as a lost host would do; returns once its AMQP port is closed.
    func kill(node: Int) throws {
        let pidFile = "/var/lib/rabbitmq-cluster/node\(node)/rabbit.pid"
        let text = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let pid = try #require(pid_t(text), "no pid in \(pidFile)")
        #expect(Foundation.kill(pid, SIGKILL) == 0)
        Programs.shell(
            "timeout 10 sh -c 'while (exec 3<>/dev/tcp/127.0.0.1/\(5700 + node)) 2>/dev/null; do sleep 0.05; done'")
    }
}

/// Tells a task to stop.
final class StopFlag: Sendable {
    private let stopped = Atomic<Bool>(false)
    var isSet: Bool { stopped.load(ordering: .relaxed) }
    func set() { stopped.store(true, ordering: .relaxed) }
}

struct ClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What happened when, from the test's start, printed at its end.
final class Timeline: Sendable {
    private let start = ContinuousClock.now
    private let entries = Mutex<[String]>([])

    /// Records `event` at the present moment, and returns that moment.
    @discardableResult
    func note(_ event: String) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        entries.withLock { $0.append(String(format: "%7.2f s  ", (now - start).seconds) + event) }
        return now
    }

    func seconds(since instant: ContinuousClock.Instant) -> String {
        String(format: "%.2f", (ContinuousClock.now - instant).seconds)
    }

    var text: String { "timeline:\n" + entries.withLock { $0.joined(separator: "\n") } }
}
