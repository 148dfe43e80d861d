import ServiceLifecycle

/// A service that does nothing until the program shuts down gracefully, then runs `close`: what the other services
/// share (a pool) is closed by whoever made it. A service group stops its services in the reverse order of its list,
/// so this one, listed first, closes after the others have stopped.
struct ClosingAtShutdown: Service {
    let close: @Sendable () async -> Void

    func run() async {
        try? await gracefulShutdown()
        await close()
    }
}
