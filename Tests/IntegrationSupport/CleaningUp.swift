/// Runs `body`, then `cleanUp` whether `body` threw or not. After a failed `body`, a failure of `cleanUp` is dropped,
/// so that the test reports the first one.
public func cleaningUp<T>(
    _ cleanUp: () async throws -> Void, after body: () async throws -> T, isolation: isolated (any Actor)? = #isolation
) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        try? await cleanUp()
        throw error
    }
    try await cleanUp()
    return result
}
