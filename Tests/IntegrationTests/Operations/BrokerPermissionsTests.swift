import AMQPClient
import Foundation
import IntegrationSupport
import Pipeline
import ProducerCore
import TestSupport
import Testing

/// The broker's users that `scripts/services` creates with `deploy/rabbitmq-users.sh`, one per role, tried against the
/// real broker as a stolen credential would be: each can do its role's work and nothing more.
@Suite(.serialized)
struct BrokerPermissionsTests {
    static func amqp(_ role: String) throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(
            url: TestServers.variable("AMQP_\(role)_URL"), variable: "AMQP_\(role)_URL")
        configuration.timeoutSeconds = 5
        return configuration
    }

    /// Whether `attempt` on a fresh connection of `role` is refused by the broker's access control (403).
    static func isRefused(_ role: String, _ attempt: (AMQPConnection) async throws -> Void) async throws -> Bool {
        let connection = try await AMQPConnection.connect(amqp(role), logger: TestServers.logger)
        let refused: Bool
        do {
            try await attempt(connection)
            refused = false
        } catch let error as AMQPError {
            refused = error.debugDescription.contains("ACCESS_REFUSED")
            if !refused { Issue.record("\(role): \(error.debugDescription)") }
        }
        await connection.close()
        return refused
    }

    /// Publishes one event to `exchange` with confirms; a refusal closes the channel, which the next call reports.
    static func publish(to exchange: String, on connection: AMQPConnection) async throws {
        try await connection.enableConfirms()
        let outcomes = try await connection.publishConfirmed([Self.event(to: exchange)], window: 1)
        _ = try await connection.queueStatus(Topology().queue)
        #expect(outcomes == [.confirmed])
    }

    /// A message for the default topology's exchanges.
    static func event(to exchange: String) -> AMQPOutgoingMessage {
        let body = #"{"event_id":"\#(UUID())","type":"checkin","user_id":1,"occurred_at":"2023-02-08T09:00:00Z"}"#
        return AMQPOutgoingMessage(
            exchange: exchange, routingKey: "checkin", properties: AMQPProperties.event(), body: Array(body.utf8))
    }

    @Test func eachRoleCanDoItsWorkAndNothingMore() async throws {
        let topology = Topology()
        // The consumer's user declares the pipeline's topology (its queues stay empty here).
        let consumer = try await AMQPConnection.connect(Self.amqp("CONSUMER"), logger: TestServers.logger)
        try await consumer.declare(topology)
        _ = try await consumer.queueStatus(topology.queue)
        await consumer.close()

        // The publisher's: it publishes events (taken back out here, as the demo pipeline shares these names), and it
        // cannot consume or purge the rollups queue, nor publish to the dead letters, nor declare anything.
        #expect(try await !Self.isRefused("PUBLISHER") { try await Self.publish(to: topology.exchange, on: $0) })
        let administrator = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
        #expect(try await administrator.purgeQueue(topology.queue) >= 1)
        await administrator.close()
        #expect(try await Self.isRefused("PUBLISHER") { try await $0.consume(topology.queue) })
        #expect(try await Self.isRefused("PUBLISHER") { try await $0.purgeQueue(topology.queue) })
        #expect(
            try await Self.isRefused("PUBLISHER") { try await Self.publish(to: topology.deadLetterExchange, on: $0) })
        #expect(
            try await Self.isRefused("PUBLISHER") { try await $0.declareExchange("coworking.other", type: "topic") })
        // The consumer's: it cannot publish events.
        #expect(try await Self.isRefused("CONSUMER") { try await Self.publish(to: topology.exchange, on: $0) })
        // The dead-letter tool's: it reads the dead letters, and cannot consume the rollups queue.
        let tool = DeadLetterQueue(
            configuration: try Self.amqp("DEAD_LETTERS"), topology: topology, logger: TestServers.logger)
        _ = try await tool.summarize()
        #expect(try await Self.isRefused("DEAD_LETTERS") { try await $0.consume(topology.queue) })

        // The monitor's: the management API's queue figures, and no change.
        let monitor = try TestServers.variable("RABBITMQ_MONITOR")
        let reading = try await runToEnd([
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", monitor,
            "http://127.0.0.1:15672/api/queues/%2F/coworking.rollups",
        ])
        #expect(String(decoding: reading.output, as: UTF8.self) == "200")
        let deleting = try await runToEnd([
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", monitor, "-X", "DELETE",
            "http://127.0.0.1:15672/api/queues/%2F/coworking.rollups/contents",
        ])
        #expect(String(decoding: deleting.output, as: UTF8.self) == "401")
    }
}
