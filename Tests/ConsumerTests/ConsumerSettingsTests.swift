import Basics
import ConsumerCore
import Pipeline
import Testing

@Suite("Consumer settings")
struct ConsumerSettingsTests {
    static let database = ["DB_NAME": "coworking", "DB_USERNAME": "consumer"]

    static func settings(_ values: [String: String]) throws(ConfigurationError) -> ConsumerSettings {
        try ConsumerSettings.fromEnvironment(EnvironmentVariables(database.merging(values) { $1 }))
    }

    @Test func defaultsHoldABatchPerFoldConnectionAndOneMore() throws {
        let settings = try Self.settings([:])
        #expect(settings.batchSize == 4000)
        #expect(settings.foldConnections == 2)
        #expect(settings.prefetch == 12_000)
        #expect(settings.batchMaxDelay == .zero)
        #expect(settings.shutdownDeadline == .seconds(20))
    }

    @Test func prefetchFollowsBatchSizeAndFoldConnectionsUnlessSet() throws {
        #expect(try Self.settings(["BATCH_SIZE": "500", "FOLD_CONNECTIONS": "3"]).prefetch == 2000)
        #expect(
            try Self.settings(["BATCH_SIZE": "500", "FOLD_CONNECTIONS": "1"]).prefetch == 1000,
            "one batch arriving while the other folds")
        #expect(try Self.settings(["BATCH_SIZE": "10000", "FOLD_CONNECTIONS": "8"]).prefetch == 65_535)
        let explicit = try Self.settings(["BATCH_SIZE": "500", "FOLD_CONNECTIONS": "1", "PREFETCH": "700"])
        #expect(explicit.foldConnections == 1)
        #expect(explicit.prefetch == 700)
    }

    @Test(
        "a bad consumer setting names its variable",
        arguments: [
            (
                ["FOLD_CONNECTIONS": "0"],
                #"configuration error: FOLD_CONNECTIONS must be an integer from 1 to 8, got "0""#
            ),
            (
                ["BATCH_SIZE": "many"],
                #"configuration error: BATCH_SIZE must be an integer from 1 to 10000, got "many""#
            ),
            (
                ["BATCH_SIZE": "500", "PREFETCH": "499"],
                "configuration error: PREFETCH must be at least BATCH_SIZE (500)"
            ),
        ])
    func badSetting(_ values: [String: String], _ line: String) {
        do {
            _ = try Self.settings(values)
            Issue.record("accepted \(values)")
        } catch {
            #expect(error.description == line)
        }
    }
}
