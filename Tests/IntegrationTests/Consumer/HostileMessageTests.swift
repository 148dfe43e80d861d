import AMQPClient
import Basics
import CRabbitMQ
import ConsumerCore
import Foundation
import IntegrationSupport
import Pipeline
import Testing

/// Messages built to hurt the consumer: nested headers, headers that fill the frame, a database that refuses every
/// event. None stops the consumer's stream or takes valid events down with it.
@Suite
struct HostileMessageTests {
    static let invalidBody = Array("hello".utf8)
    static let notJSON = "body is not JSON (syntax error at byte 0)"

    /// Publishes `body` to `exchange` with a header `deep` that nests `depth` tables, built and encoded by
    /// librabbitmq alone: the Swift layer refuses to build what it would have to recurse into.
    static func publishNested(depth: Int, body: [UInt8], exchange: String) throws {
        let url = try AMQPConfiguration(url: TestServers.variable("AMQP_URL"), variable: "AMQP_URL")
        let state = try #require(amqp_new_connection())
        defer { amqp_destroy_connection(state) }
        let socket = amqp_tcp_socket_new(state)
        let node = try #require(url.nodes.first)
        try #require(amqp_socket_open(socket, node.host, Int32(node.port)) == 0)
        let login = crabbitmq_login_plain(state, url.virtualHost, 0, 131_072, 0, url.user, url.password)
        try #require(login.reply_type == AMQP_RESPONSE_NORMAL)
        amqp_channel_open(state, 1)
        amqp_confirm_select(state, 1)
        try #require(amqp_get_rpc_reply(state).reply_type == AMQP_RESPONSE_NORMAL)

        let entries = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: depth)
        defer { entries.deallocate() }
        let key = strdup("deep")!
        defer { free(key) }
        for level in 0..<depth {
            var value = amqp_field_value_t()
            if level == depth - 1 {
                value.kind = UInt8(AMQP_FIELD_KIND_I32.rawValue)
                value.value.i32 = 7
            } else {
                value.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
                value.value.table = amqp_table_t(num_entries: 1, entries: entries + level + 1)
            }
            entries[level] = amqp_table_entry_t(key: amqp_bytes_t(len: 4, bytes: key), value: value)
        }
        var properties = amqp_basic_properties_t()
        properties._flags = UInt32(AMQP_BASIC_HEADERS_FLAG)
        properties.headers = amqp_table_t(num_entries: 1, entries: entries)
        let status = body.withUnsafeBufferPointer { body in
            amqp_basic_publish(
                state, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("checkin"), 0, 0, &properties,
                amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
        }
        try #require(status == 0)
        var frame = amqp_frame_t()
        try #require(amqp_simple_wait_frame(state, &frame) == 0)
        try #require(frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == crabbitmq_basic_ack_method)
    }

    /// Takes every message of the rollups queue without acknowledging it, then closes the connection: the broker
    /// delivers them again, marked redelivered and with a delivery count.
    static func receiveAndReturn(_ harness: ConsumerHarness, count: Int) async throws {
        let amqp = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
        try await amqp.consume(harness.topology.queue)
        for _ in 0..<count { _ = try #require(try await amqp.nextDelivery(timeout: .seconds(5))) }
        await amqp.close()
    }

    @Test(
        "headers nested ten thousand levels deep: a valid event counts, an invalid one is dead-lettered with them",
        arguments: [false, true])
    func deeplyNestedHeaders(redelivered: Bool) async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let valid = Event(
                id: UUID(), kind: .checkin, userID: 3, occurredAt: Timestamp(year: 2023, month: 2, day: 8),
                spaceID: "hq")
            for body in [valid.jsonBody, Self.invalidBody] {
                try Self.publishNested(depth: 10_000, body: body, exchange: harness.topology.exchange)
            }
            if redelivered { try await Self.receiveAndReturn(harness, count: 2) }
            try await harness.withConsumers {
                try await harness.waitUntilCounted(1)
                try await harness.waitForDeadLetters(1)
            }
            let dead = try await harness.deadLetters()
            #expect(dead.map(\.body) == [Self.invalidBody])
            #expect(dead.first?.header("x-rejection-reason") == .string(Self.notJSON))
            #expect(dead.first?.header("x-death") == nil, "the consumer dead-lettered it, not the delivery limit")
            #expect(throws: AMQPError.self, "the nested headers came along") { try dead.first?.properties() }
            #expect(try await harness.storedRollups().checkins == 1)
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0)
        }
    }

    @Test func headersThatLeaveNoRoomForTheReasonAreDroppedAndTheReasonSaysSo() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            // Properties 32 bytes short of what a frame holds (131,052): flags, content type, delivery mode and timestamp
            // take 28 bytes, the table's length and the entry's key, type and length 14.
            let filler = String(repeating: "x", count: 131_052 - 32 - 28 - 14)
            try await harness.publish([Self.invalidBody], headers: ["fill": .string(filler)])
            try await harness.withConsumers {
                try await harness.waitForDeadLetters(1)
            }
            let dead = try #require(try await harness.deadLetters().first)
            #expect(dead.body == Self.invalidBody)
            var expected = AMQPProperties(
                contentType: "application/json",
                headers: [
                    "x-rejection-reason": .string(
                        Self.notJSON + "; its headers were dropped: "
                            + "the message's properties with the added headers would not fit in a frame")
                ], deliveryMode: 2)
            expected.timestamp = dead.timestamp
            #expect(try dead.properties() == expected)
        }
    }

    @Test func aBodyOverTheLimitIsDeadLetteredWithItsFirst64KiBAndItsSize() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let large = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
            let valid = Event(
                id: UUID(), kind: .checkin, userID: 4, occurredAt: Timestamp(year: 2023, month: 2, day: 8),
                spaceID: "hq")
            try await harness.publish([large, valid.jsonBody], headers: ["x-trace": .string("t-9")])
            try await harness.withConsumers {
                try await harness.waitUntilCounted(1)
                try await harness.waitForDeadLetters(1)
            }
            let dead = try #require(try await harness.deadLetters().first)
            #expect(dead.body == Array(large.prefix(65_536)))
            #expect(
                dead.header("x-rejection-reason")
                    == .string(
                        "body is 3000000 bytes, more than the 65536 allowed (the dead letter keeps its first 65536)")
            )
            #expect(dead.header("x-trace") == .string("t-9"))
            #expect(try await harness.storedRollups().checkins == 1)
        }
    }

    /// A database that refuses every event, a known-good one too, refuses for a reason of its own: the consumer holds
    /// the batch and says why, rather than dead-letter the stream or exit (which would hand the deliveries back and
    /// count them again), and counts the events once an operator mends it.
    @Test func aDatabaseThatRefusesEveryEventHoldsTheBatchUntilItIsMended() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            // A zone PostgreSQL does not know, as a hand-edited report_zones or an older tz database would leave.
            try await harness.database().execute(
                "INSERT INTO report_zones (zone, ready) VALUES ('Mars/Olympus_Mons', true)")
            let events = (0..<20).map {
                Event(
                    id: UUID(), kind: .checkin, userID: Int32($0 + 1),
                    occurredAt: Timestamp(year: 2023, month: 2, day: 8, hour: 9), spaceID: "hq")
            }
            try await harness.publish(events.map(\.jsonBody))
            let consumer = try RunningConsumer(harness)
            let refused =
                "HTTP/1.1 503 Service Unavailable failed: the database refuses any event, a known-good one too "
                + "(SQLSTATE 22023)"
            try await Waiting.until(within: .seconds(30)) { try await consumer.readiness() == refused }
            #expect(try await consumer.readiness() == refused)
            #expect(try await consumer.waiting("refuses_any_event") == 1)
            try await Task.sleep(for: .seconds(2))
            #expect(consumer.process.isRunning)
            #expect(try await harness.readyMessages(in: harness.topology.queue) == 0, "the consumer holds them")
            #expect(try await harness.database().query("SELECT count(*) FROM counted_events")[0].int(0) == 0)

            try await harness.database().execute("DELETE FROM report_zones WHERE zone = 'Mars/Olympus_Mons'")
            try await harness.waitUntilCounted(events.count)
            try await Waiting.until(within: .seconds(10)) { try await consumer.readiness() == "HTTP/1.1 200 OK ok" }
            let lines = consumer.stop()
            #expect(consumer.process.terminationStatus == 0)
            let waits = lines.filter { $0.contains("Folding waits for the database") }
            #expect(waits.count == 1, "\(waits)")
            #expect(waits.first?.contains(#"time zone "Mars/Olympus_Mons" not recognized"#) == true)
            #expect(try await harness.deadLetters().isEmpty)
            #expect(try await harness.storedRollups().checkins == events.count)
        }
    }
}
