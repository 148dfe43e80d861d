import Foundation

/// Where and how to reach RabbitMQ: one node, or the nodes of a cluster, which share users and virtual hosts.
public struct AMQPConfiguration: Sendable, Equatable {
    /// The broker's nodes, in the order given; a connection tries them in turn (`AMQPConnection.connect`).
    public var nodes: [Node]
    public var user: String
    public var password: String
    /// The virtual host, percent-decoded (`%2F` in the URL is `/`).
    public var virtualHost: String
    /// Seconds between heartbeats (the `heartbeat` query parameter, default 30; 0 turns them off). The broker
    /// closes a connection after two missed ones, and the client notices a dead broker the same way.
    public var heartbeatSeconds: Int
    /// Seconds to wait for the TCP connection, the handshake and each broker reply
    /// (the `connection_timeout` query parameter, default 10).
    public var timeoutSeconds: Int
    /// TLS, for an `amqps://` URL; nil for plain TCP.
    public var tls: TLS?

    /// How to speak TLS to the broker: its certificate chain and host name are always verified.
    public struct TLS: Sendable, Equatable {
        /// `AMQP_CACERT`: a PEM file of the authorities that may sign the broker's certificate; default the system's
        /// bundle, `/etc/ssl/certs/ca-certificates.crt`.
        public var caCertificatePath: String
        /// `AMQP_CERT` and `AMQP_KEY`: PEM files of a client certificate and its key, for a broker that asks for one.
        public var certificatePath: String?
        public var keyPath: String?

        public static let systemBundle = "/etc/ssl/certs/ca-certificates.crt"

        public init(
            caCertificatePath: String = TLS.systemBundle, certificatePath: String? = nil, keyPath: String? = nil
        ) {
            self.caCertificatePath = caCertificatePath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
        }
    }

    /// One node's address.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }
    }

    public init(
        nodes: [Node] = [Node(host: "127.0.0.1", port: 5672)], user: String = "guest", password: String = "guest",
        virtualHost: String = "/", heartbeatSeconds: Int = 30, timeoutSeconds: Int = 10
    ) {
        self.nodes = nodes
        self.user = user
        self.password = password
        self.virtualHost = virtualHost
        self.heartbeatSeconds = heartbeatSeconds
        self.timeoutSeconds = timeoutSeconds
    }

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

    private func with(nodes: [Node]) -> AMQPConfiguration {
        var copy = self
        copy.nodes = nodes
        return copy
    }

    /// Parses an AMQP URI as RabbitMQ documents it. Errors name `variable` and never echo the URL, which holds
    /// a password.
    public init(url: String, variable: String = "AMQP_URL") throws(ConfigurationError) {
        func invalid(_ problem: String) -> ConfigurationError {
            ConfigurationError(variable: variable, problem: problem)
        }
        guard let components = URLComponents(string: url) else {
            throw invalid("must be a URL such as amqp://user:pass@host:5672/vhost")
        }
        let scheme = components.scheme?.lowercased()
        guard scheme == "amqp" || scheme == "amqps" else {
            throw invalid("must start with amqp:// or amqps://")
        }
        self.init()
        if scheme == "amqps" { tls = TLS() }
        var node = Node(host: "127.0.0.1", port: scheme == "amqps" ? 5671 : 5672)
        if let host = components.host, !host.isEmpty { node.host = host }
        if let port = components.port {
            guard (1...65_535).contains(port) else { throw invalid("has a port out of range") }
            node.port = port
        }
        nodes = [node]
        if let user = components.user { self.user = user }
        if let password = components.password { self.password = password }
        let path = components.percentEncodedPath
        if path.count > 1 {
            let encoded = path.dropFirst()
            guard !encoded.contains("/"), let decoded = encoded.removingPercentEncoding else {
                throw invalid("has a malformed virtual host (write / as %2F)")
            }
            virtualHost = decoded
        }
        for item in components.queryItems ?? [] {
            guard let value = item.value.flatMap({ Int($0) }), value >= 0 else {
                throw invalid("has a non-numeric query parameter \(item.name)")
            }
            switch item.name {
            case "heartbeat": heartbeatSeconds = min(value, 65_535)
            case "connection_timeout": timeoutSeconds = max(1, value)
            default: throw invalid("has an unknown query parameter \(item.name) (known: heartbeat, connection_timeout)")
            }
        }
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
