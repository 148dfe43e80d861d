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

    @Test func anExpiredAnswerIsServedWhileTheNextIsComputedAndNotPastTwiceItsLifetime() async throws {
        let cache = ResponseCache<String>(lifetime: .seconds(1))
        let source = Source(delay: .milliseconds(300))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1")

        try await Task.sleep(for: .milliseconds(1_200))
        let started = ContinuousClock.now
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1", "expired: served while refreshed")
        #expect(ContinuousClock.now - started < .milliseconds(250), "nobody waits for the refresh")
        #expect(try await cache.answer(for: "q", source.compute) == "answer 1", "one refresh at a time")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await cache.answer(for: "q", source.compute) == "answer 2")
        #expect(source.count == 2)

        try await Task.sleep(for: .milliseconds(2_200))
        let waited = ContinuousClock.now
        #expect(try await cache.answer(for: "q", source.compute) == "answer 3", "past twice the lifetime: wait")
        #expect(ContinuousClock.now - waited >= .milliseconds(300))
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
}
