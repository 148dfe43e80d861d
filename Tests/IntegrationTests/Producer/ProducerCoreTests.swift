import Basics
import Foundation
import IntegrationSupport
import Pipeline
import ProducerCore
import TestSupport
import Testing

@testable import ProducerCore

/// The producer's line reader, load generator, checkpoint and parity's comparison, on their own.
@Suite
struct ProducerCoreTests {
    @Test func aCheckpointIsSavedWholeAndReadBack() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("checkpoint-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try LegacyCheckpoint.read(from: path) == nil)
        try LegacyCheckpoint(tokenFloor: 90_001, userFloor: 501).write(to: path)
        try LegacyCheckpoint(tokenFloor: 90_003, userFloor: 9_001).write(to: path)
        #expect(try LegacyCheckpoint.read(from: path) == LegacyCheckpoint(tokenFloor: 90_003, userFloor: 9_001))
        #expect(!FileManager.default.fileExists(atPath: path + ".partial"))
        try "{\"tokenFloor\": 1".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try LegacyCheckpoint.read(from: path) }
    }

    @Test func parityListsEveryKeyThatDiffersAMissingOneAsZeroInOrder() {
        #expect(
            LegacyParity.differences(
                ["2023-02-08": 5, "2023-02-10": 3], ["2023-02-08": 5, "2023-02-09": 1, "2023-02-10": 2])
                == [.init(key: "2023-02-09", legacy: 0, pipeline: 1), .init(key: "2023-02-10", legacy: 3, pipeline: 2)])
        // Members by their number, not their text.
        #expect(
            LegacyParity.differences(["10": 1, "9": 2, "100": 4], ["10": 2, "9": 3, "100": 4])
                == [.init(key: "9", legacy: 2, pipeline: 3), .init(key: "10", legacy: 1, pipeline: 2)])
    }

    @Test func theAPIClientTakesAPlainHTTPAddressOnly() throws {
        let client = try #require(ReportAPIClient(url: "http://report-api:5153/ignored", token: "t"))
        #expect(client.host == "report-api" && client.port == 5153 && client.token == "t")
        #expect(ReportAPIClient(url: "http://localhost", token: nil)?.port == 80)
        for refused in [
            "https://report-api", "report-api:5153", "http://:5153", "http://h:0", "http://h:x", "http://h:1:2",
        ] {
            #expect(ReportAPIClient(url: refused, token: nil) == nil, "\(refused)")
        }
    }

    @Test func theLineReaderGivesEveryLineWithoutItsLineFeedAcrossChunks() async throws {
        let long = String(repeating: "x", count: 70_000)
        let text = "first\n\n\(long)\nlast without a line feed"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lines-\(UUID())")
        try text.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        var lines: [String] = []
        for try await line in LineReader(try FileHandle(forReadingFrom: file)) {
            lines.append(String(decoding: line, as: UTF8.self))
        }
        #expect(lines == ["first", "", long, "last without a line feed"])
    }

    @Test func theLoadGeneratesCheckinsOfItsUsersSpacesAndDays() {
        let load = SyntheticLoad(rate: 100, duration: .seconds(1), users: 5, days: 2)
        var random = SeededGenerator(seed: 7)
        let now = Timestamp(year: 2026, month: 12, day: 6, hour: 12)
        let events = load.events(count: 2_000, now: now, using: &random)
        #expect(events.count == 2_000)
        #expect(Set(events.map(\.id)).count == 2_000)
        #expect(Set(events.map(\.userID)) == [1, 2, 3, 4, 5])
        #expect(Set(events.compactMap(\.spaceID)) == Set(SyntheticLoad.spaces))
        #expect(events.allSatisfy { $0.kind == .checkin })
        #expect(events.allSatisfy { $0.occurredAt <= now && $0.occurredAt > now.adding(seconds: -2 * 86_400) })
        var again = SeededGenerator(seed: 7)
        #expect(load.events(count: 2_000, now: now, using: &again) == events, "the same seed, the same events")
        let today = SyntheticLoad(rate: 100, duration: .seconds(1), users: 5, days: 0)
        #expect(today.events(count: 10, now: now, using: &random).allSatisfy { $0.occurredAt == now })
    }

    @Test func theLoadOwesRateTimesDurationCheckinsEachDueAtItsTime() {
        let load = SyntheticLoad(rate: 2_000, duration: .milliseconds(1_500), users: 10, days: 0)
        #expect(load.total == 3_000)
        #expect(load.due(after: .zero) == 0)
        #expect(load.due(after: .microseconds(499)) == 0)
        #expect(load.due(after: .microseconds(500)) == 1)
        #expect(load.due(after: .milliseconds(750)) == 1_500)
        #expect(load.due(after: .seconds(60)) == 3_000, "never more than the total, however late")
    }

    @Test func theLoadPublishesEveryCheckinItOwesConfirmedAndNoneBeforeItIsDue() async throws {
        try await ConsumerHarness.with(zones: ["UTC"]) { harness in
            let publisher = EventPublisher(
                configuration: try TestServers.amqp(), exchange: harness.topology.exchange, logger: TestServers.logger)
            let started = ContinuousClock.now
            let counts = try await SyntheticLoad(rate: 2_000, duration: .seconds(1), users: 10, days: 1).run(publisher)
            let elapsed = ContinuousClock.now - started
            await publisher.close()
            #expect(counts == EventPublisher.Counts(published: 2_000, confirmed: 2_000))
            // The last check-in falls due a second after the start: a load that published ahead of its schedule would
            // end sooner.
            #expect(elapsed >= .seconds(1), "\(elapsed)")
        }
    }
}
