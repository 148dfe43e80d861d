import AMQPClient
import Foundation
import IntegrationSupport
import Testing

/// `amqps://` through the TLS listener of the local broker, whose certificate authority `scripts/services` made
/// with openssl: the consumer and the producer verify the broker's certificate and host name.
@Suite(.serialized)
struct TLSTests {
    static func tlsFile(_ name: String) throws -> String {
        try TestServers.variable("AMQP_TLS_DIR") + "/" + name
    }

    /// The settings of a program that reaches the broker over TLS with the local authority.
    static func environment(caCertificate: String? = nil) throws -> [String: String] {
        [
            "AMQP_URL": try TestServers.variable("AMQPS_URL"),
            "AMQP_CACERT": try caCertificate ?? tlsFile("ca.pem"),
        ]
    }

    /// An authority of its own, which signed nothing the broker presents.
    static func unrelatedAuthority() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let made = system(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=unrelated' -keyout \(directory)/ca.key "
                + "-out \(directory)/ca.pem >/dev/null 2>&1")
        try #require(made == 0)
        return directory + "/ca.pem"
    }

    @Test func theConsumerAndTheProducerSpeakTLSWithTheBrokerVerified() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            var consumerEnvironment = try Self.environment()
            // A client certificate signed by the same authority is presented and accepted.
            consumerEnvironment["AMQP_CERT"] = try Self.tlsFile("client.pem")
            consumerEnvironment["AMQP_KEY"] = try Self.tlsFile("client.key")
            let consumer = try Programs.startConsumer(harness, changing: consumerEnvironment)
            defer { Programs.stop(consumer) }
            for user in 1...3 {
                let published = try Programs.run(
                    "producer", ["publish", "--user-id", "\(user)", "--at", "2023-02-08T09:00:00Z"],
                    environment: try Self.environment().merging(["EXCHANGE": harness.topology.exchange]) { $1 })
                #expect(published.status == 0)
                #expect(published.output == "published 1 events, 1 confirmed\n")
            }
            try await harness.waitUntilCounted(3)
            #expect(try await harness.storedRollups().checkins == 3)
            Programs.stop(consumer)
            #expect(consumer.terminationStatus == 0)
        }
    }

    @Test func aWrongAuthorityStopsEachProgramWithOneLineNamingIt() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let wrong = try Self.unrelatedAuthority()
            let expected =
                "the broker's certificate was not verified with the authorities of \(wrong) for host localhost"

            let published = try Programs.run(
                "producer", ["publish", "--user-id", "1"],
                environment: try Self.environment(caCertificate: wrong).merging(["EXCHANGE": harness.topology.exchange])
                {
                    $1
                })
            #expect(published.status != 0)
            #expect(published.errors.split(separator: "\n").count == 1, "\(published.errors)")
            #expect(published.errors.contains(expected))

            let standardError = Pipe()
            let consumer = try Programs.startConsumer(
                harness, changing: try Self.environment(caCertificate: wrong), standardError: standardError)
            consumer.waitUntilExit()
            let lines = String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                .split(separator: "\n")
            #expect(consumer.terminationStatus == 1)
            #expect(lines.count == 1, "\(lines)")
            #expect(lines.first?.contains(expected) == true)
        }
    }
}
