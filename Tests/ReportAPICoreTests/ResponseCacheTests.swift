import Synchronization
import Testing

@testable import ReportAPICore

/// The report API's response cache, on its own: no server is involved.
@Suite("The report API's response cache")
struct ResponseCacheTests {
    /// A computation that counts its runs and, after `delay`, answers `answer N` for its Nth run.
    final class Source: Sendable {
        private let runs = Atomic<Int>(0)
        let delay: Duration

        init(delay: Duration = .zero) {
            self.delay = delay
        }

        var count: Int { runs.load(ordering: .relaxed) }

        func compute() async throws -> String {
            let run = runs.add(1, ordering: .relaxed).newValue
            try await Task.sleep(for: delay)
            return "answer \(run)"
        }
    }

    struct Refused: Error {}

    @Test func anAnswerIsReusedForItsLifetimeAndConcurrentAskersShareOneComputation() async throws {
        let cache = ResponseCache<String>(lifetime: .seconds(60))
        let source = Source(delay: .milliseconds(100))
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.answer(for: "q", source.compute) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers == Array(repeating: "answer 1", count: 20))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")
        #expect(try await cache.answer(for: "other", source.compute) == "answer 2")
        #expect(source.count == 2)
    }

    /// A clock the test moves by hand.
    final class ManualClock: Sendable {
        private let instant = Mutex(ContinuousClock.now)

        func now() -> ContinuousClock.Instant { instant.withLock { $0 } }

        func advance(by duration: Duration) { instant.withLock { $0 += duration } }
    }

    /// A computation that answers `answer N` for its Nth run, each run only once the test has released that many
    /// (or after ten seconds, so that a cache that waits where it should not fails the test rather than hang it).
    final class GatedSource: Sendable {
        private let runs = Atomic<Int>(0)
        private let released = Atomic<Int>(0)

        var count: Int { runs.load(ordering: .relaxed) }

        func compute() async throws -> String {
            let run = runs.add(1, ordering: .relaxed).newValue
            let deadline = ContinuousClock.now + .seconds(10)
            while released.load(ordering: .relaxed) < run, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
            }
            return "answer \(run)"
        }

        /// Lets the next run finish.
        func release() { released.add(1, ordering: .relaxed) }
    }

    /// Ages are read from a clock the test moves, and each refresh finishes only when the test says so, so that
    /// no expectation depends on how fast the machine runs: an answer served while its refresh is held back was
    /// served without waiting for it.
    @Test func anExpiredAnswerIsServedWhileTheNextIsComputedAndNotPastTwiceItsLifetime() async throws {
        let clock = ManualClock()
        let cache = ResponseCache<String>(lifetime: .seconds(1), now: clock.now)
        let source = GatedSource()
        async let first = cache.answer(for: "q", source.compute)
        source.release()
        #expect(try await first == "answer 1")

        clock.advance(by: .milliseconds(1_500))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1", "expired: served while refreshed")
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1", "one refresh at a time")
        source.release()
        var answer = try await cache.answer(for: "q", source.compute)
        let deadline = ContinuousClock.now + .seconds(10)
        while answer == "answer 1", ContinuousClock.now < deadline {
            await Task.yield()
            answer = try await cache.answer(for: "q", source.compute)
        }
        #expect(answer == "answer 2", "the refresh, once it came, with no other begun")
        #expect(source.count == 2)

        clock.advance(by: .milliseconds(2_500))
        async let third = cache.answer(for: "q", source.compute)
        source.release()
        #expect(try await third == "answer 3", "past twice the lifetime: waits for the refresh")
        #expect(source.count == 3)
    }

    @Test func aFailedComputationReachesItsAskersAndIsNotKept() async throws {
        let cache = ResponseCache<String>(lifetime: .seconds(60))
        await #expect(throws: Refused.self) { try await cache.answer(for: "q") { throw Refused() } }
        let source = Source()
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")
    }

    @Test func aLifetimeOfZeroComputesEveryTime() async throws {
        let cache = ResponseCache<String>(lifetime: .zero)
        let source = Source()
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")
        #expect(try await cache.answer(for: "q", source.compute) == "answer 2")
    }

    /// A generation the test moves by hand, as the signal of folds would; nil while "down".
    final class ManualGeneration: Sendable {
        private let value = Mutex<UInt64?>(1)

        func current() -> UInt64? { value.withLock { $0 } }

        func fold() { value.withLock { $0 = ($0 ?? 0) + 1 } }

        func lose() { value.withLock { $0 = nil } }
    }

    @Test func withTheSignalAnAnswerLastsUntilTheNextFoldWhichEachQueryRecomputesOnce() async throws {
        let clock = ManualClock()
        let generation = ManualGeneration()
        let cache = ResponseCache<String>(lifetime: .seconds(1), now: clock.now, generation: generation.current)
        let source = Source(delay: .milliseconds(50))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")
        // Long past the lifetime, nothing was folded: the answer stands.
        clock.advance(by: .seconds(3_600))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")
        // A fold: the next askers, however many, wait for one computation and get the fresh answer.
        generation.fold()
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.answer(for: "q", source.compute) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers == Array(repeating: "answer 2", count: 20))
        #expect(source.count == 2)
        // The signal lost: the lifetime rules again, and the answer of before is still fresh for it.
        generation.lose()
        #expect(try await cache.answer(for: "q", source.compute) == "answer 2")
        clock.advance(by: .seconds(3))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 3")
        #expect(source.count == 3)
    }

    /// With the signal of folds, a costly report (its recomputation held back by the test) is computed once at a time:
    /// askers wait for it as long as the cache's patience, then get the last answer; past `maxStaleness` they wait.
    @Test func aSlowReportIsComputedOnceAtATimeAndItsLastAnswerServedMeanwhile() async throws {
        let clock = ManualClock()
        let generation = ManualGeneration()
        let cache = ResponseCache<String>(
            lifetime: .seconds(1), patience: .milliseconds(50), maxStaleness: .seconds(2), now: clock.now,
            generation: generation.current)
        let source = GatedSource()
        async let first = cache.answer(for: "q", servingStale: true, source.compute)
        source.release()
        #expect(try await first == "answer 1")

        generation.fold()
        let asked = ContinuousClock.now
        #expect(
            try await cache.answer(for: "q", servingStale: true, source.compute) == "answer 1",
            "the last answer, after waiting")
        #expect(ContinuousClock.now - asked >= .milliseconds(50), "waited its patience for the new one")
        generation.fold()
        #expect(try await cache.answer(for: "q", servingStale: true, source.compute) == "answer 1")
        #expect(source.count == 2, "one computation at a time, however many folds")

        source.release()
        var answer = "answer 1"
        let deadline = ContinuousClock.now + .seconds(10)
        while answer == "answer 1", ContinuousClock.now < deadline {
            answer = try await cache.answer(for: "q", servingStale: true, source.compute)
        }
        #expect(answer == "answer 2", "the computation that ran, once it ended")
        #expect(source.count == 2)
        #expect(
            try await cache.answer(for: "q", servingStale: true, source.compute) == "answer 2",
            "while the current one is computed")
        #expect(source.count == 3, "the current generation's, started by the next asker")

        // The last answer is now too old to be served: askers wait for the new one.
        clock.advance(by: .seconds(3))
        async let waited = cache.answer(for: "q", servingStale: true, source.compute)
        try await Task.sleep(for: .milliseconds(200))
        source.release()
        #expect(try await waited == "answer 3")
    }

    /// A computation shared by several askers goes on while one of them is left; once every asker has left (their
    /// clients went away), it is cancelled, and the next asker starts afresh.
    @Test func aComputationIsCancelledOnceEveryAskerLeft() async throws {
        final class Source: Sendable {
            let runs = Atomic<Int>(0)
            let cancelled = Atomic<Int>(0)

            func compute() async throws -> String {
                let run = runs.add(1, ordering: .relaxed).newValue
                do {
                    try await Task.sleep(for: .seconds(30))
                } catch {
                    cancelled.add(1, ordering: .relaxed)
                    throw error
                }
                return "answer \(run)"
            }
        }
        let cache = ResponseCache<String>(lifetime: .seconds(60))
        let source = Source()
        let askers = (0..<2).map { _ in Task { try await cache.answer(for: "q", source.compute) } }
        while cache.holders(of: "q") < 2 { try await Task.sleep(for: .milliseconds(5)) }
        askers[0].cancel()
        try await Task.sleep(for: .milliseconds(100))
        #expect(source.cancelled.load(ordering: .relaxed) == 0, "the other asker still waits for it")
        askers[1].cancel()
        let deadline = ContinuousClock.now + .seconds(5)
        while source.cancelled.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(source.cancelled.load(ordering: .relaxed) == 1)
        for asker in askers { await #expect(throws: CancellationError.self) { try await asker.value } }
        let next = Task { try await cache.answer(for: "q", source.compute) }
        while source.runs.load(ordering: .relaxed) < 2 { try await Task.sleep(for: .milliseconds(5)) }
        next.cancel()
    }

    /// Answers fill the budget of bytes; past it the least recently asked for are dropped first, and an answer larger
    /// than a quarter of the budget is given and not kept. The total is reported after each change.
    @Test func theCacheKeepsWithinItsBudgetDroppingTheLeastRecentlyAskedFirst() async throws {
        let total = Mutex(0)
        let cache = ResponseCache<String>(
            lifetime: .seconds(60), maxBytes: 1_000, size: { $0.utf8.count },
            sizeChanged: { bytes in total.withLock { $0 = bytes } })
        let answer = String(repeating: "x", count: 98)
        for key in 1...8 { _ = try await cache.answer(for: "k\(key)") { answer } }
        #expect(total.withLock { $0 } == 8 * 100)
        #expect(cache.cachedAnswer(for: "k1") == answer, "asked for again: the most recent")
        for key in 9...10 { _ = try await cache.answer(for: "k\(key)") { answer } }
        #expect(total.withLock { $0 } <= 750)
        #expect(cache.cachedAnswer(for: "k1") != nil)
        #expect(cache.cachedAnswer(for: "k2") == nil, "the least recently asked for went first")
        #expect(cache.cachedAnswer(for: "k10") != nil)
        let large = String(repeating: "y", count: 300)
        #expect(try await cache.answer(for: "large") { large } == large)
        #expect(cache.cachedAnswer(for: "large") == nil)
    }

    /// However many callers ask, the readiness probe asks the database once a second at most, and answers by its
    /// deadline when the database does not.
    @Test func theReadinessProbeAsksAtMostOnceASecondAndAnswersByItsDeadline() async throws {
        let asks = Atomic<Int>(0)
        let probe = ReadinessProbe {
            asks.add(1, ordering: .relaxed)
            try? await Task.sleep(for: .milliseconds(50))
            return true
        }
        let started = ContinuousClock.now
        let answers = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { await probe.databaseAnswers(within: .seconds(2)) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(await probe.databaseAnswers(within: .seconds(2)))
        #expect(answers == Array(repeating: true, count: 200))
        // Once for the 201 callers, unless a machine busy with other tests spread them over more than a second.
        let seconds = Int((ContinuousClock.now - started) / .seconds(1))
        let asked = asks.load(ordering: .relaxed)
        #expect(asked >= 1 && asked <= 1 + seconds, "\(asked) questions in \(seconds) s")
        try await Task.sleep(for: .milliseconds(1_100))
        #expect(await probe.databaseAnswers(within: .seconds(2)))
        #expect(asks.load(ordering: .relaxed) == asked + 1, "an answer over a second old is asked again")

        let hanging = ReadinessProbe {
            try? await Task.sleep(for: .seconds(30))
            return true
        }
        let hangingAsked = ContinuousClock.now
        #expect(await hanging.databaseAnswers(within: .milliseconds(200)) == false)
        #expect(ContinuousClock.now - hangingAsked < .seconds(10), "by its deadline, not the question's 30 s")
    }
}
