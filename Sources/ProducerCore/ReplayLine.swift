import Basics
import Pipeline

/// One line of a JSON Lines file to replay: the message to publish, or why it is refused.
public enum ReplayLine: Sendable {
    case message(body: [UInt8], routingKey: String, messageID: String?)
    case refused(lineNumber: Int, reason: String)
    case blank

    /// Checks `line` with the consumer's own validation, unless `raw`, which sends any line as it is (routed by
    /// its `type` when it has a valid one).
    public init(_ line: [UInt8], lineNumber: Int, raw: Bool, decoder: EventDecoder, now: Timestamp) {
        guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") })
        else {
            self = .blank
            return
        }
        do {
            let event = try decoder.decode(line, now: now)
            self = .message(body: line, routingKey: event.kind.rawValue, messageID: event.id.uuidString.lowercased())
        } catch {
            self =
                raw
                ? .message(body: line, routingKey: "unknown", messageID: nil)
                : .refused(lineNumber: lineNumber, reason: error.description)
        }
    }
}
