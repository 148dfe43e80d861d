import AMQPClient
import Basics
import Foundation
import IntegrationSupport
import Pipeline
import ProducerCore
import Testing

/// `producer dead-letters` against the real broker: a summary that removes nothing, requeueing after a fix, purging.
@Suite
struct DeadLetterQueueTests {
    /// Puts dead letters in the harness's dead-letter queue as the consumer would: each with its reason.
    static func deadLetter(_ harness: ConsumerHarness, _ letters: [(reason: String, body: String)]) async throws {
        let amqp = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
        try await amqp.enableConfirms()
        let messages = letters.enumerated().map { index, letter in
            var properties = AMQPProperties.event(
                messageID: "m\(index)", publishedAt: Timestamp(year: 2026, month: 12, day: 1, hour: index))
            properties.headers = ["x-rejection-reason": .string(letter.reason), "x-trace": .string("t-\(index)")]
            return AMQPOutgoingMessage(
                exchange: harness.topology.deadLetterExchange, routingKey: "checkin", properties: properties,
                body: Array(letter.body.utf8))
        }
        #expect(try await amqp.publishConfirmed(messages, window: 100).allSatisfy { $0 == .confirmed })
        await amqp.close()
    }

    /// The ready dead letters: each command of the tool ends once the letters it kept are back in the queue.
    static func readyDeadLetters(_ harness: ConsumerHarness) async throws -> Int {
        try await harness.readyMessages(in: harness.topology.deadLetterQueue)
    }

    @Test func theSummaryRemovesNothingRequeueRemovesOnlyWhatWasConfirmedAndPurgeWhatItChose() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let refusedUser = "user_id must be an integer from 1 to 2147483647"
            try await Self.deadLetter(
                harness,
                [
                    (refusedUser, #"{"user":1}"#), ("body is not JSON (syntax error at byte 0)", "hello"),
                    (refusedUser, #"{"user":2}"#), (refusedUser, #"{"user":3}"#),
                    ("body is not JSON (syntax error at byte 0)", "bye"),
                ])
            try await harness.waitForDeadLetters(5)
            let queue = DeadLetterQueue(
                configuration: try TestServers.amqp(), topology: harness.topology, logger: TestServers.logger)

            let summaries = try await queue.summarize()
            #expect(
                summaries == [
                    DeadLetterQueue.Summary(
                        reason: refusedUser, count: 3, oldest: Timestamp(year: 2026, month: 12, day: 1),
                        newest: Timestamp(year: 2026, month: 12, day: 1, hour: 3), example: #"{"user":1}"#),
                    DeadLetterQueue.Summary(
                        reason: "body is not JSON (syntax error at byte 0)", count: 2,
                        oldest: Timestamp(year: 2026, month: 12, day: 1, hour: 1),
                        newest: Timestamp(year: 2026, month: 12, day: 1, hour: 4), example: "hello"),
                ])
            #expect(try await Self.readyDeadLetters(harness) == 5, "the summary removes none")

            let once = try await queue.requeue(DeadLetterQueue.Choice(reason: "user_id", limit: 2))
            #expect(once.matched == 2 && once.requeued == 2)
            let rest = try await queue.requeue(DeadLetterQueue.Choice(reason: "user_id"))
            #expect(rest.matched == 1 && rest.requeued == 1)
            #expect(try await Self.readyDeadLetters(harness) == 2)

            // Back on the events exchange, routed to the rollups queue, as first published: no rejection header, and a
            // count of requeues.
            let amqp = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await amqp.consume(harness.topology.queue)
            var requeued: [String: AMQPProperties] = [:]
            while let delivery = try await amqp.nextDelivery(timeout: .seconds(2)) {
                requeued[String(decoding: delivery.body, as: UTF8.self)] = try delivery.properties()
            }
            await amqp.close()
            #expect(Set(requeued.keys) == [#"{"user":1}"#, #"{"user":2}"#, #"{"user":3}"#])
            #expect(requeued[#"{"user":2}"#]?.headers == ["x-trace": .string("t-2"), "x-requeue-count": .int64(1)])
            #expect(requeued[#"{"user":2}"#]?.messageID == "m2")

            #expect(try await queue.purge(DeadLetterQueue.Choice(reason: "not JSON", limit: 1)) == 1)
            #expect(try await Self.readyDeadLetters(harness) == 1, "the one not chosen is back")
            let refused = try Programs.run(
                "producer", ["dead-letters", "purge"], environment: try harness.environment())
            #expect(refused.status != 0)
            #expect(refused.errors.contains("add --yes to confirm"))
            let listed = try Programs.run(
                "producer", ["dead-letters", "list"], environment: try harness.environment())
            #expect(listed.status == 0)
            #expect(
                listed.output
                    == "1\tbody is not JSON (syntax error at byte 0)\n"
                    + "\tpublished from 2026-12-01T04:00:00.000000Z to 2026-12-01T04:00:00.000000Z; for example: bye\n"
                    + "1 dead letters, 1 reasons\n")
            let purged = try Programs.run(
                "producer", ["dead-letters", "purge", "--yes"], environment: try harness.environment())
            #expect(purged.output == "removed 1 dead letters\n")
            #expect(try await harness.readyMessages(in: harness.topology.deadLetterQueue) == 0)
        }
    }

    /// Reasons and bodies come from publishers: `list` escapes their control characters (a reason with an escape
    /// sequence cannot rewrite the operator's terminal); `--reason` with `--exact` takes one reason and not those that
    /// contain it; a letter requeued and dead again says how often, so that a requeue that mends nothing shows.
    @Test func theToolIsSafeForAWaryOperator() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            try await Self.deadLetter(
                harness,
                [
                    ("type must be checkin", "a"), ("type must be checkin or user_joined", "b"),
                    ("\u{1B}[2J\u{1B}[Hall clear\r", "c\u{1B}[31m\u{07}"),
                ])
            let run = { (arguments: [String]) in
                try Programs.run("producer", ["dead-letters"] + arguments, environment: try harness.environment())
            }
            let listed = try run(["list"])
            #expect(
                !listed.output.contains("\u{1B}") && !listed.output.contains("\u{07}") && !listed.output.contains("\r"))
            #expect(listed.output.contains("1\t" + #"\u{1B}[2J\u{1B}[Hall clear\r"#), "\(listed.output)")
            #expect(listed.output.contains(#"for example: c\u{1B}[31m\u{7}"#))

            let exact = try run(["requeue", "--reason", "type must be checkin", "--exact"])
            #expect(exact.output == "published 1 events, 1 confirmed\n")
            #expect(try await Self.readyDeadLetters(harness) == 2, "only the exact reason")
            #expect(try run(["requeue", "--exact"]).errors.contains("--exact needs --reason"))

            // The requeued letter is refused again, as the consumer would (it forwards the headers): it shows.
            let amqp = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await amqp.consume(harness.topology.queue)
            let back = try #require(try await amqp.nextDelivery(timeout: .seconds(5)))
            try await amqp.ack(back.deliveryTag, multiple: false)
            await amqp.close()
            #expect(back.header(DeadLetterQueue.requeueCountHeader) == .int64(1))
            let again = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await again.enableConfirms()
            var properties = try back.properties()
            properties.headers?["x-rejection-reason"] = .string("type must be checkin")
            _ = try await again.publishConfirmed(
                [
                    AMQPOutgoingMessage(
                        exchange: harness.topology.deadLetterExchange, routingKey: "checkin", properties: properties,
                        body: back.body)
                ], window: 10)
            await again.close()
            #expect(try await Self.readyDeadLetters(harness) == 3)
            let relisted = try run(["list"])
            #expect(relisted.output.contains("1\ttype must be checkin\n"))
            #expect(relisted.output.contains("\trequeued and back again, up to 1 times\n"))
        }
    }
}
