import Foundation

/// A serial executor that runs every job on one dedicated thread.
///
/// The C connection actors (`AMQPConnection`, `PostgresConnection`) use one each as their executor, so the
/// connection handle is only ever touched from that thread, and the blocking C calls they make (a socket read,
/// `PQexec`) block that thread instead of one of the few threads of Swift's cooperative pool.
public final class ThreadExecutor: SerialExecutor {
    private let condition = NSCondition()
    // Guarded by `condition`: the compiler cannot see a lock-based guard, hence `nonisolated(unsafe)`.
    private nonisolated(unsafe) var jobs: [UnownedJob] = []
    private nonisolated(unsafe) var isShuttingDown = false

    /// Starts the thread; `name` shows in debuggers and `top -H`.
    public init(name: String) {
        let thread = Thread { [self] in runJobs() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread finish the jobs it has and exit. Called by the owning actor's `deinit`.
    public func shutdown() {
        condition.lock()
        isShuttingDown = true
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !isShuttingDown {
                condition.wait()
            }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch {
                job.runSynchronously(on: asUnownedSerialExecutor())
            }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
