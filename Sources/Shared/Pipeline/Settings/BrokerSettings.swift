import AMQPClient
import Basics
import Foundation

extension AMQPConfiguration {
    /// `AMQP_URL`: `amqp://user:pass@host:5672/vhost`, default `amqp://guest:guest@127.0.0.1:5672/%2F`; or
    /// `amqps://user:pass@host:5671/vhost` for TLS, with `AMQP_CACERT`, `AMQP_CERT` and `AMQP_KEY`. The nodes of a
    /// cluster are URLs separated by commas, alike but for their host and port.
    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError)
        -> AMQPConfiguration
    {
        guard let list = environment["AMQP_URL"] else { return AMQPConfiguration() }
        var configuration: AMQPConfiguration?
        for url in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !url.isEmpty {
            let parsed = try AMQPConfiguration(url: url, variable: "AMQP_URL")
            guard var combined = configuration else {
                configuration = parsed
                continue
            }
            combined.nodes += parsed.nodes
            guard combined == parsed.with(nodes: combined.nodes) else {
                throw ConfigurationError(
                    variable: "AMQP_URL",
                    problem: "lists URLs that differ in more than host and port (a cluster shares users and vhosts)")
            }
            configuration = combined
        }
        guard var configuration else {
            throw ConfigurationError(
                variable: "AMQP_URL", problem: "must be a URL such as amqp://user:pass@host:5672/vhost")
        }
        guard var tls = configuration.tls else { return configuration }
        func readable(_ variable: String) throws(ConfigurationError) -> String? {
            guard let path = environment[variable] else { return nil }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigurationError(variable: variable, problem: "names no readable file \(path.quoted())")
            }
            return path
        }
        tls.caCertificatePath = try readable("AMQP_CACERT") ?? tls.caCertificatePath
        tls.certificatePath = try readable("AMQP_CERT")
        tls.keyPath = try readable("AMQP_KEY")
        guard (tls.certificatePath == nil) == (tls.keyPath == nil) else {
            throw ConfigurationError(
                variable: tls.certificatePath == nil ? "AMQP_CERT" : "AMQP_KEY",
                problem: "is required with \(tls.certificatePath == nil ? "AMQP_KEY" : "AMQP_CERT")")
        }
        configuration.tls = tls
        return configuration
    }

    fileprivate func with(nodes: [Node]) -> AMQPConfiguration {
        var copy = self
        copy.nodes = nodes
        return copy
    }
}

/// The exchanges and queues of the pipeline (docs/events.md), by name.
public struct Topology: Sendable, Equatable {
    /// `EXCHANGE`: the topic exchange publishers send events to; default `coworking.events`.
    public var exchange: String
    /// `QUEUE`: the quorum queue the consumers share; default `coworking.rollups`.
    public var queue: String
    /// `DEAD_LETTER_EXCHANGE`: the fanout exchange, and the queue of the same name bound to it, where every
    /// message that cannot be counted goes; default `coworking.dead`.
    public var deadLetterExchange: String
    /// `DELIVERY_LIMIT`: deliveries after which the broker dead-letters a message itself; default 50.
    public var deliveryLimit: Int
    /// `QUORUM_INITIAL_GROUP_SIZE`: the members each quorum queue is declared with on a cluster
    /// (`x-quorum-initial-group-size`); unset, the broker's own default. RabbitMQ refuses to declare an existing queue
    /// with another value, or with it where it was declared without: set it before the queues exist.
    public var initialGroupSize: Int?

    public init(
        exchange: String = "coworking.events", queue: String = "coworking.rollups",
        deadLetterExchange: String = "coworking.dead", deliveryLimit: Int = 50, initialGroupSize: Int? = nil
    ) {
        self.exchange = exchange
        self.queue = queue
        self.deadLetterExchange = deadLetterExchange
        self.deliveryLimit = deliveryLimit
        self.initialGroupSize = initialGroupSize
    }

    /// The queue that holds dead letters: named after its exchange.
    public var deadLetterQueue: String { deadLetterExchange }

    public static func fromEnvironment(_ environment: EnvironmentVariables) throws(ConfigurationError) -> Topology {
        let defaults = Topology()
        return Topology(
            exchange: try environment.name("EXCHANGE", default: defaults.exchange),
            queue: try environment.name("QUEUE", default: defaults.queue),
            deadLetterExchange: try environment.name("DEAD_LETTER_EXCHANGE", default: defaults.deadLetterExchange),
            deliveryLimit: try environment.integer("DELIVERY_LIMIT", default: defaults.deliveryLimit, in: 1...1_000),
            initialGroupSize: try environment["QUORUM_INITIAL_GROUP_SIZE"].map { _ throws(ConfigurationError) in
                try environment.integer("QUORUM_INITIAL_GROUP_SIZE", default: 0, in: 1...99)
            }
        )
    }
}
