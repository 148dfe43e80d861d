import AMQPClient
import Basics
import ConsumerCore
import Foundation
import IntegrationSupport
import Pipeline
import Testing

@Suite("AMQP layer against RabbitMQ")
struct AMQPConnectionTests {
    /// A connection with confirms on and a topology of the test's own, removed afterwards.
    static func withTopology(
        deliveryLimit: Int = 50, _ body: (AMQPConnection, Topology) async throws -> Void
    ) async throws {
        let prefix = TestServers.uniqueName("amqp")
        let topology = Topology(
            exchange: prefix + ".events", queue: prefix + ".rollups", deadLetterExchange: prefix + ".dead",
            deliveryLimit: deliveryLimit)
        func cleanUp() async throws {
            try await AMQPConnection.withConnection(TestServers.amqp(), logger: TestServers.logger) {
                try await $0.delete(topology)
            }
        }
        try await cleaningUp(cleanUp) {
            try await AMQPConnection.withConnection(TestServers.amqp(), logger: TestServers.logger) { connection in
                try await connection.declare(topology)
                try await connection.enableConfirms()
                try await body(connection, topology)
            }
        }
    }

    /// The publishing time the test messages are stamped with.
    static let publishedAt = Timestamp(year: 2023, month: 2, day: 8, hour: 8)

    static func message(_ topology: Topology, _ text: String, headers: AMQPTable? = nil) -> AMQPOutgoingMessage {
        var properties = AMQPProperties.event(messageID: text, publishedAt: publishedAt)
        properties.headers = headers
        return AMQPOutgoingMessage(
            exchange: topology.exchange, routingKey: "checkin", properties: properties, body: Array(text.utf8))
    }

    @Test func publishesAPipelinedWindowWithConfirmsThenConsumesAndAcks() async throws {
        try await Self.withTopology { connection, topology in
            let messages = (0..<1_000).map { Self.message(topology, "m\($0)") }
            let outcomes = try await connection.publishConfirmed(messages, window: 100)
            #expect(outcomes == Array(repeating: .confirmed, count: 1_000))
            #expect(try await connection.queueStatus(topology.queue).messageCount == 1_000)

            try await connection.setPrefetch(300)
            try await connection.consume(topology.queue)
            var deliveries: [AMQPDelivery] = []
            while deliveries.count < 1_000, let delivery = try await connection.nextDelivery(timeout: .seconds(2)) {
                deliveries.append(delivery)
                if deliveries.count % 100 == 0 { try await connection.ack(delivery.deliveryTag, multiple: true) }
            }
            #expect(deliveries.count == 1_000, "the prefetch window moves on with each multiple-ack")
            #expect(deliveries.map { String(decoding: $0.body, as: UTF8.self) } == (0..<1_000).map { "m\($0)" })
            #expect(deliveries.map(\.deliveryTag) == Array(1...1_000))
            #expect(deliveries[0].routingKey == "checkin")
            #expect(deliveries[0].exchange == topology.exchange)
            #expect(
                try deliveries[0].properties() == AMQPProperties.event(messageID: "m0", publishedAt: Self.publishedAt))
            #expect(!deliveries[0].redelivered)
            let probe = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            #expect(try await probe.queueStatus(topology.queue) == QueueStatus(messageCount: 0, consumerCount: 1))
            await probe.close()
        }
    }

    @Test func anUnroutableMessageComesBackAsReturnedAndTheRestAreConfirmed() async throws {
        try await Self.withTopology { connection, topology in
            let unbound = topology.exchange + ".unbound"
            try await connection.declareExchange(unbound, type: "topic")
            var lost = Self.message(topology, "nowhere")
            lost.exchange = unbound
            let outcomes = try await connection.publishConfirmed(
                [Self.message(topology, "a"), lost, Self.message(topology, "b")], window: 10)
            #expect(outcomes == [.confirmed, .returned, .confirmed])
            try await connection.deleteExchange(unbound)
        }
    }

    @Test func aFullQueueNacksWhatItCannotTake() async throws {
        try await Self.withTopology { connection, topology in
            let bounded = topology.queue + ".bounded"
            try await connection.declareQueue(
                bounded, arguments: ["x-max-length": .int64(1), "x-overflow": .string("reject-publish")])
            let messages = ["first", "second", "third"].map {
                AMQPOutgoingMessage(
                    exchange: "", routingKey: bounded, properties: AMQPProperties(), body: Array($0.utf8))
            }
            #expect(try await connection.publishConfirmed(messages, window: 10) == [.confirmed, .nacked, .nacked])
            try await connection.deleteQueue(bounded)
        }
    }

    /// `scripts/services` bounds the broker's message size at 4 MiB, a second line of defence behind the consumer.
    @Test func theBrokerRefusesAMessageOverItsConfiguredMaximum() async throws {
        try await Self.withTopology { connection, topology in
            let message = AMQPOutgoingMessage(
                exchange: topology.exchange, routingKey: "checkin", properties: AMQPProperties(),
                body: [UInt8](repeating: 0x20, count: 4 * 1024 * 1024 + 1))
            let outcomes = try await connection.publishConfirmed([message], window: 1)
            #expect(outcomes == [.unconfirmed])
            let isOpen = await connection.isOpen
            #expect(!isOpen, "the broker closed the channel")
        }
    }

    @Test func everyPropertyAndHeadersOfEveryTypeSurviveTheDeadLetterExchangeUnchanged() async throws {
        try await Self.withTopology { connection, topology in
            let headers: AMQPTable = [
                "x-rejection-reason": .string("user_id is missing"),
                "flag": .bool(true), "small": .int8(-3), "count": .int64(9_000_000_000), "ratio": .double(0.25),
                "when": .timestamp(1_675_844_998), "raw": .bytes([0, 1, 255]),
                "nested": .table(["list": .array([.string("a"), .int32(7), .table(["deep": .void])])]),
                "price": .decimal(scale: 2, value: 1999),
            ]
            var properties = AMQPProperties(
                contentType: "text/plain", headers: headers, deliveryMode: 2, messageID: "m1")
            properties.contentEncoding = "identity"
            properties.priority = 5
            properties.correlationID = "c-1"
            properties.replyTo = "replies"
            properties.expiration = "600000"
            properties.timestamp = 1_675_844_998
            properties.type = "checkin"
            properties.userID = "guest"
            properties.appID = "producer"
            properties.clusterID = "cluster-1"
            let message = AMQPOutgoingMessage(
                exchange: topology.deadLetterExchange, routingKey: "anything", properties: properties,
                body: Array("not json".utf8))
            #expect(try await connection.publishConfirmed([message], window: 1) == [.confirmed])
            try await connection.consume(topology.deadLetterQueue)
            let dead = try #require(try await connection.nextDelivery(timeout: .seconds(5)))
            #expect(dead.body == Array("not json".utf8))
            #expect(try dead.properties() == properties)
            try await connection.ack(dead.deliveryTag, multiple: false)
        }
    }

    @Test func aRejectedMessageIsDeadLetteredWithXDeath() async throws {
        try await Self.withTopology { connection, topology in
            #expect(
                try await connection.publishConfirmed([Self.message(topology, "poison")], window: 1) == [.confirmed])
            try await connection.consume(topology.queue)
            let delivery = try #require(try await connection.nextDelivery(timeout: .seconds(5)))
            try await connection.reject(delivery.deliveryTag, requeue: false)

            let reader = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await reader.consume(topology.deadLetterQueue)
            let dead = try #require(try await reader.nextDelivery(timeout: .seconds(5)))
            #expect(dead.body == Array("poison".utf8))
            let death = try #require(Self.firstDeath(dead))
            #expect(death["reason"] == .string("rejected"))
            #expect(death["queue"] == .string(topology.queue))
            try await reader.ack(dead.deliveryTag, multiple: false)
            await reader.close()
        }
    }

    @Test func aMessageRequeuedPastTheDeliveryLimitIsDeadLetteredByTheBroker() async throws {
        try await Self.withTopology(deliveryLimit: 2) { connection, topology in
            #expect(
                try await connection.publishConfirmed([Self.message(topology, "crashes")], window: 1) == [.confirmed])
            try await connection.consume(topology.queue)
            var deliveries = 0
            while let delivery = try await connection.nextDelivery(timeout: .seconds(2)) {
                deliveries += 1
                try await connection.reject(delivery.deliveryTag, requeue: true)
            }
            #expect(deliveries == 3, "the first delivery and two more, then the broker gives up")
            #expect(try await connection.queueStatus(topology.deadLetterQueue).messageCount == 1)
            let reader = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await reader.consume(topology.deadLetterQueue)
            let dead = try #require(try await reader.nextDelivery(timeout: .seconds(5)))
            #expect(Self.firstDeath(dead)?["reason"] == .string("delivery_limit"))
            #expect(try dead.properties().headers?["x-rejection-reason"] == nil)
            try await reader.ack(dead.deliveryTag, multiple: false)
            await reader.close()
        }
    }

    static func firstDeath(_ delivery: AMQPDelivery) -> AMQPTable? {
        guard case .array(let deaths)? = try? delivery.properties().headers?["x-death"],
            case .table(let first)? = deaths.first
        else { return nil }
        return first
    }

    @Test func aConnectionClosedByTheBrokerIsReportedAsClosedNotAsATimeout() async throws {
        try await Self.withTopology { _, topology in
            let connection = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            try await connection.consume(topology.queue)
            let port = try #require(await connection.localPort)
            try await RabbitManagement.closeConnection(
                named: "127.0.0.1:\(port) -> 127.0.0.1:\(connection.node.port)", reason: "closed by test")

            let started = ContinuousClock.now
            do {
                while try await connection.nextDelivery(timeout: .seconds(1)) == nil {
                    if ContinuousClock.now - started > .seconds(10) { break }
                }
                Issue.record("no error after the broker closed the connection")
            } catch let error as AMQPError {
                #expect(error.code == .connectionClosed)
                #expect(error.isRetriable)
                #expect(error.debugDescription.contains("320 CONNECTION_FORCED - closed by test"))
                #expect(!error.description.contains("CONNECTION_FORCED"), "server text stays out of the description")
            }
            #expect(await connection.isOpen == false)
            await #expect(throws: AMQPError.self) { try await connection.ack(1, multiple: false) }
        }
    }

    @Test func aDeclarationThatContradictsTheQueueClosesTheChannel() async throws {
        try await Self.withTopology { _, topology in
            let connection = try await AMQPConnection.connect(TestServers.amqp(), logger: TestServers.logger)
            do {
                try await connection.declareQueue(topology.queue, arguments: ["x-queue-type": .string("classic")])
                Issue.record("the broker accepted a contradicting declaration")
            } catch let error as AMQPError {
                #expect(error.code == .channelClosed)
                #expect(!error.isRetriable)
                #expect(error.debugDescription.contains("406 PRECONDITION_FAILED"))
            }
            #expect(await connection.isOpen == false)
        }
    }

    @Test func wrongCredentialsAreRefusedAndNotRetried() async throws {
        var configuration = try TestServers.amqp()
        configuration.password = "wrong-password"
        do {
            _ = try await AMQPConnection.connect(configuration, logger: TestServers.logger)
            Issue.record("connected with a wrong password")
        } catch let error as AMQPError {
            #expect(error.code == .accessRefused)
            #expect(!error.isRetriable)
            #expect(!error.description.contains("wrong-password"))
            #expect(!error.debugDescription.contains("wrong-password"))
        }
    }

    @Test func aPortWithoutABrokerFailsFastAndIsRetriable() async throws {
        var configuration = try TestServers.amqp()
        configuration.nodes = [.init(host: "127.0.0.1", port: 1)]
        await #expect {
            _ = try await AMQPConnection.connect(configuration, logger: TestServers.logger)
        } throws: { error in
            (error as? AMQPError).map { $0.code == .connectionFailed && $0.isRetriable } ?? false
        }
    }

    @Test func aConnectionGoesToTheFirstNodeThatAnswersStartingAfterTheNodeLost() async throws {
        var configuration = try TestServers.amqp()
        let broker = try #require(configuration.nodes.first)
        let dead = [AMQPConfiguration.Node(host: "127.0.0.1", port: 1), .init(host: "127.0.0.1", port: 2)]
        configuration.nodes = [dead[0], broker, dead[1]]
        for _ in 0..<6 {
            let connection = try await AMQPConnection.connect(configuration, logger: TestServers.logger)
            #expect(connection.node == broker, "whichever node it starts from")
            await connection.close()
        }
        // After a lost connection the next node is tried first: after the broker's, the silent one (which holds the
        // attempt for the timeout), and after the silent one's, the broker's.
        let (listener, port) = try Self.silentListener()
        defer { close(listener) }
        let silent = AMQPConfiguration.Node(host: "127.0.0.1", port: port)
        configuration.nodes = [broker, silent]
        configuration.timeoutSeconds = 1
        let afterSilent = try await AMQPConnection.connect(configuration, after: silent, logger: TestServers.logger)
        #expect(afterSilent.node == broker)
        #expect(!Self.wasTried(listener))
        await afterSilent.close()
        let afterBroker = try await AMQPConnection.connect(configuration, after: broker, logger: TestServers.logger)
        #expect(afterBroker.node == broker)
        #expect(Self.wasTried(listener))
        await afterBroker.close()
        configuration.nodes = dead
        await #expect {
            _ = try await AMQPConnection.connect(configuration, logger: TestServers.logger)
        } throws: { error in
            (error as? AMQPError).map { $0.code == .connectionFailed && $0.isRetriable } ?? false
        }
    }

    @Test func aPeerThatNeverSpeaksAMQPTimesOutInsteadOfHanging() async throws {
        let (listener, port) = try Self.silentListener()
        defer { close(listener) }
        var configuration = try TestServers.amqp()
        configuration.nodes = [.init(host: "127.0.0.1", port: port)]
        configuration.timeoutSeconds = 1
        let started = ContinuousClock.now
        await #expect(throws: AMQPError.self) {
            _ = try await AMQPConnection.connect(configuration, logger: TestServers.logger)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    /// A TCP listener on loopback that accepts (in the kernel's backlog) and never answers, and its port.
    private static func silentListener() throws -> (Int32, Int) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let status = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 ? getsockname(listener, $0, &length) : -1
            }
        }
        try #require(status == 0 && listen(listener, 8) == 0)
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        return (listener, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Whether a connection is waiting on `listener`: a client tried it.
    private static func wasTried(_ listener: Int32) -> Bool {
        let client = accept(listener, nil, nil)
        guard client >= 0 else { return false }
        close(client)
        return true
    }
}
