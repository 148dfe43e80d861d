import Basics
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
        /// A PEM file of the authorities that may sign the broker's certificate; default the system's bundle,
        /// `/etc/ssl/certs/ca-certificates.crt`.
        public var caCertificatePath: String
        /// PEM files of a client certificate and its key, for a broker that asks for one.
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

    /// Parses an AMQP URI as RabbitMQ documents it. Errors name `variable` and never echo the URL, which holds
    /// a password.
    public init(url: String, variable: String) throws(ConfigurationError) {
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
