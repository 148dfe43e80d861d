/// The result of one child task of a discarding task group, for whoever holds it. A group hands its children's
/// results out in the order they finish; the consumer needs each fold's in the order its batch arrived, while the
/// group still owns the task: when the group ends, no fold is left running.
struct ChildTaskResult<Value: Sendable>: Sendable {
    private let stream: AsyncThrowingStream<Value, any Error>

    /// Adds `operation` to `group` as a child task whose result this holds.
    init(
        in group: inout ThrowingDiscardingTaskGroup<any Error>,
        _ operation: @escaping @Sendable () async throws -> Value
    ) {
        let (stream, continuation) = AsyncThrowingStream<Value, any Error>.makeStream()
        self.stream = stream
        group.addTask {
            do {
                continuation.yield(try await operation())
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }

    /// Waits for the child's result, or its error; throws `CancellationError` when the waiting task is cancelled.
    var value: Value {
        get async throws {
            var results = stream.makeAsyncIterator()
            guard let value = try await results.next() else { throw CancellationError() }
            return value
        }
    }
}
