import NIOCore
import NIOHTTP1
import NIOPosix

/// A small client of the report API's GET answers, for `producer parity`: one request per connection, HTTP/1.1 over
/// plain TCP (the API's address inside the cluster, or a port forwarded to it).
public struct ReportAPIClient: Sendable {
    public var host: String
    public var port: Int
    /// The bearer token, when the API asks for one.
    public var token: String?

    /// A client of `url` (`http://host:port`, a path ignored), or nil when it is not one.
    public init?(url: String, token: String?) {
        guard url.hasPrefix("http://") else { return nil }
        let authority = url.dropFirst("http://".count).prefix { $0 != "/" }
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard let host = parts.first, !host.isEmpty, parts.count <= 2 else { return nil }
        self.host = String(host)
        if parts.count == 2 {
            guard let port = Int(parts[1]), (1...65_535).contains(port) else { return nil }
            self.port = port
        } else {
            self.port = 80
        }
        self.token = token
    }

    /// The answer to GET `target` (a path and query): its status and body.
    public func get(_ target: String) async throws -> (status: Int, body: [UInt8]) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target)
            head.headers.add(name: "Host", value: "\(host):\(port)")
            head.headers.add(name: "Connection", value: "close")
            if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
            try await outbound.write(.head(head))
            try await outbound.write(.end(nil))
            var status = 0
            var body: [UInt8] = []
            for try await part in inbound {
                switch part {
                case .head(let response): status = Int(response.status.code)
                case .body(let bytes): body += bytes.readableBytesView
                case .end: return (status, body)
                }
            }
            throw ReportAPIClientError(message: "the report API closed the connection before its answer ended")
        }
    }
}

/// A request the report API did not answer.
public struct ReportAPIClientError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
