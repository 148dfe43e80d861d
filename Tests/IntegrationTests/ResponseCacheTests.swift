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
}
