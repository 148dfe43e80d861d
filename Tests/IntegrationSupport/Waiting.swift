/// Waits on conditions rather than for fixed times.
public enum Waiting {
    /// Waits until `condition` holds, for `timeout` at most.
    public static func until(within timeout: Duration, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
    }
}
