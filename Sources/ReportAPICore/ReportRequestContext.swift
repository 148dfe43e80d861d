import Hummingbird
import NIOCore

/// The report API's request context: Hummingbird's, plus the connection the request came on, which the API needs to
/// tell clients apart (`ClientLimits`) and to notice a client that went away mid-computation (`ClientDisconnects`).
public struct ReportRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection; every request of a kept-alive connection has the same.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
