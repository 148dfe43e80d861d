import Basics
import Foundation
import Testing

/// An actor on a thread of its own, as the connections are.
private actor OnItsThread {
    let executor = ThreadExecutor(name: "test")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var calls = 0

    /// The kernel's name of the thread it runs on, which `top -H` shows.
    func threadName() -> String? {
        calls += 1
        return try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)
            .trimmingCharacters(in: .newlines)
    }

    func stop() {
        executor.shutdown()
    }
}

@Suite("The connections' thread executor")
struct ThreadExecutorTests {
    @Test func itsThreadEndsAndIsJoinedAndAJobAfterItStartsAnother() async {
        let actor = OnItsThread()
        let first = await actor.threadName()
        #expect(first == "test")
        await actor.stop()
        // Returns only once the thread has ended; a second join returns at once.
        await actor.executor.join()
        await actor.executor.join()
        // A call after the thread ended (a deinit, a call on a closed connection) is run on a thread started for it,
        // which ends once it has run out of jobs.
        let restarted = await actor.threadName()
        #expect(restarted == "test")
        await actor.stop()
        await actor.executor.join()
    }

    @Test func manyCallersAreServedOneAtATimeOnItsThread() async {
        let actor = OnItsThread()
        let names = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<200 { group.addTask { await actor.threadName() } }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(names == Array(repeating: "test", count: 200))
        await actor.stop()
        await actor.executor.join()
    }
}
