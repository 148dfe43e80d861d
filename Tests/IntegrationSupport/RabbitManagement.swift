import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// RabbitMQ's management HTTP API on loopback, for what a test needs the broker itself to do.
public enum RabbitManagement {
    /// Has the broker close the connection called `name` ("127.0.0.1:54321 -> 127.0.0.1:5672").
    public static func closeConnection(named name: String, reason: String) async throws {
        let encoded = try #require(name.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        let url = try #require(URL(string: "http://127.0.0.1:15672/api/connections/\(encoded)"))
        var request = URLRequest(url: url)
        request.httpMethod = "DELETE"
        request.setValue("Basic " + Data("guest:guest".utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
        request.setValue(reason, forHTTPHeaderField: "X-Reason")
        // The management plugin learns of a new connection from its stats, a moment after it opens.
        for _ in 0..<50 {
            let (_, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode
            if status == 204 { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("RabbitMQ did not close the connection \(name)")
    }
}
