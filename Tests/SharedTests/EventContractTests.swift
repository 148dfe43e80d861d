import Basics
import Foundation
import Pipeline
import TestSupport
import Testing

/// The published contract (`asyncapi.yaml`) and the consumer agree: over the test corpus, every event the consumer
/// accepts is valid by the document's JSON Schema, every one it refuses for a rule JSON Schema can express is invalid by
/// it, and the rules only the consumer checks (`docs/events.md` lists them) are the only gap.
@Suite
struct EventContractTests {
    struct Case: Decodable {
        var body: String
        var accepted: Bool
        /// What the JSON Schema does with it: `accepts` or `refuses`.
        var schema: String
        var note: String
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func corpus() throws -> [Case] {
        try JSONDecoder().decode(
            [Case].self, from: Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/event-corpus.json")))
    }

    @Test func theConsumerAcceptsExactlyTheCorpusEventsMarkedAccepted() throws {
        let decoder = EventDecoder()
        let now = Timestamp(year: 2024, month: 6, day: 1, hour: 12)
        for event in try Self.corpus() {
            let accepted = (try? decoder.decode(Array(event.body.utf8), now: now)) != nil
            #expect(accepted == event.accepted, "\(event.note): \(event.body)")
        }
    }

    /// Runs the Event schema of `asyncapi.yaml` (JSON Schema draft-07, with Python's jsonschema) over the corpus.
    @Test func theDocumentsSchemaAcceptsWhatTheConsumerAcceptsAndRefusesWhatItCanExpress() async throws {
        let script = """
            import json, sys, yaml, jsonschema
            document = yaml.safe_load(open(sys.argv[1]))
            validator = jsonschema.Draft7Validator(document["components"]["schemas"]["Event"])
            corpus = json.load(open(sys.argv[2]))
            print(json.dumps([validator.is_valid(json.loads(case["body"])) for case in corpus]))
            """
        let arguments = [
            "python3", "-c", script, Self.root.appendingPathComponent("asyncapi.yaml").path,
            Self.root.appendingPathComponent("Tests/Fixtures/event-corpus.json").path,
        ]
        let (status, data) = try await runToEnd(arguments)
        try #require(status == 0, "python3 with yaml and jsonschema is needed (scripts/test installs them)")
        let valid = try JSONDecoder().decode([Bool].self, from: data)
        let corpus = try Self.corpus()
        try #require(valid.count == corpus.count)
        for (event, isValid) in zip(corpus, valid) {
            #expect(isValid == (event.accepted || event.schema == "accepts"), "\(event.note): \(event.body)")
        }
        #expect(
            corpus.filter { !$0.accepted && $0.schema == "accepts" }.count == 7, "the rules only the consumer checks")
    }
}
