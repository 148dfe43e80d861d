import Foundation
import Glibc
import TestSupport
import Testing

/// A one-shot HTTP/1.1 GET over a plain socket, for programs started as processes, and for paths sent exactly as
/// written.
public enum HTTPGet {
    /// The whole answer, head and body, or "" when nothing listens.
    public static func text(port: Int, path: String, authorization: String? = nil) async throws -> String {
        guard let client = try? StalledClient(port: port, path: path, closing: true, authorization: authorization)
        else { return "" }
        return try await client.readToEnd()
    }
}

/// A TCP client with a small receive buffer that sends one request and reads nothing until asked.
public final class StalledClient: Sendable {
    private let socket: Int32

    /// Sends `GET path`; with `closing`, asks the server to close the connection after its answer.
    public init(port: Int, path: String, closing: Bool = false, authorization: String? = nil) throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.socket = socket
        var size: Int32 = 4096
        setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request =
            "GET \(path) HTTP/1.1\r\nHost: localhost\r\n" + (closing ? "Connection: close\r\n" : "")
            + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n"
        _ = request.withCString { send(socket, $0, strlen($0), 0) }
    }

    deinit {
        close(socket)
    }

    /// What arrives until the server closes the connection (or 10 s pass without a byte), read off the pool.
    public func readToEnd() async throws -> String {
        try await offThePool { self.receiveToEnd() }
    }

    private func receiveToEnd() -> String {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// A listening socket on a free loopback port that accepts connections and never answers.
public final class TCPListener {
    private let socket: Int32
    public let port: Int

    public init() throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && listen(socket, 16) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        self.socket = socket
        port = Int(UInt16(bigEndian: address.sin_port))
        try #require(bound)
    }

    deinit {
        close(socket)
    }
}

extension sockaddr_in {
    public static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}

extension TestServers {
    /// A loopback port that nothing listens on now, below the kernel's range of ephemeral ports (32768 and up), so
    /// that no test's outgoing connection takes it before the program that is given it listens.
    public static func freePort() -> Int {
        while true {
            let port = Int.random(in: 10_000..<32_768)
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in.loopback(port: port)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            close(socket)
            if bound { return port }
        }
    }
}
