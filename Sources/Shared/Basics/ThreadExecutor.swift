import Foundation

/// A serial executor that runs every job on one dedicated thread.
///
/// The C connection actors (`AMQPConnection`, `PostgresConnection`) use one each as their executor, so the
/// connection handle is only ever touched from that thread, and the blocking C calls they make (a socket read,
/// `PQexec`) block that thread instead of one of the few threads of Swift's cooperative pool.
///
/// Its owner ends the thread with `shutdown()` once the handle is closed, and waits for it with `join()`, so that no
/// thread is inside a C library when the process exits. A job that comes after the thread ended (the actor's deinit,
/// a call on a closed connection) starts a thread again, which ends once it has run out of jobs.
public final class ThreadExecutor: SerialExecutor {
    private let name: String
    private let condition = NSCondition()
    // Guarded by `condition`: the compiler cannot see a lock-based guard, hence `nonisolated(unsafe)`.
    private nonisolated(unsafe) var jobs: [UnownedJob] = []
    private nonisolated(unsafe) var isShuttingDown = false
    private nonisolated(unsafe) var isRunning = false
    private nonisolated(unsafe) var joiners: [CheckedContinuation<Void, Never>] = []

    /// Starts the thread; `name` shows in debuggers and `top -H`.
    public init(name: String) {
        self.name = name
        condition.lock()
        startThread()
        condition.unlock()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        if isRunning {
            condition.signal()
        } else {
            startThread()
        }
        condition.unlock()
    }

    /// Lets the thread finish the jobs it has and end.
    public func shutdown() {
        condition.lock()
        isShuttingDown = true
        condition.signal()
        condition.unlock()
    }

    /// Returns once the thread has ended, after `shutdown()`. Waits without holding a thread.
    public func join() async {
        await withCheckedContinuation { continuation in
            condition.lock()
            if isRunning {
                joiners.append(continuation)
                condition.unlock()
            } else {
                condition.unlock()
                continuation.resume()
            }
        }
    }

    /// Called with `condition` locked.
    private func startThread() {
        isRunning = true
        let thread = Thread { [self] in
            // The kernel's name, which `top -H` and debuggers show, set by the thread itself: Linux threads start
            // with their creator's, and Foundation passes `Thread.name` on only when it is set after the thread
            // started, which it cannot know for sure from inside.
            try? String(name.prefix(15)).write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            runJobs()
        }
        thread.name = name
        thread.start()
    }

    private func runJobs() {
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !isShuttingDown {
                condition.wait()
            }
            if jobs.isEmpty {
                isRunning = false
                let waiting = joiners
                joiners.removeAll()
                condition.unlock()
                for joiner in waiting { joiner.resume() }
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
