import Logging
import Synchronization
import Testing

@testable import Pipeline

@Suite("The programs' log handler")
struct LineLogHandlerTests {
    /// The text written to it, for comparing lines.
    final class Capture: TextOutputStream, Sendable {
        private let text = Mutex("")

        var lines: [String] {
            // Each line starts with a timestamp, which differs from handler to handler.
            text.withLock { $0 }.split(separator: "\n").map { String($0.drop { $0 != " " }) }
        }

        func write(_ string: String) {
            text.withLock { $0 += string }
        }
    }

    /// Logs the same lines through `handler`: its own metadata changed between lines, and lines with metadata of
    /// their own, one of them overriding a key of the logger's.
    static func logLines(_ handler: some LogHandler) {
        var logger = Logger(label: "test") { _ in handler }
        logger.info("no metadata")
        logger[metadataKey: "request"] = "7"
        logger[metadataKey: "route"] = "/summary"
        logger.warning("the logger's metadata")
        logger.error("with the line's own", metadata: ["error": "refused", "request": "8"])
        logger[metadataKey: "route"] = nil
        logger.debug("below the level")
        logger.notice("one key left")
    }

    @Test func writesTheLinesThatStreamLogHandlerWrites() {
        let (stream, line) = (Capture(), Capture())
        var streamHandler = StreamLogHandler(label: "test", stream: stream, metadataProvider: nil)
        streamHandler.logLevel = .info
        var lineHandler = LineLogHandler(StreamLogHandler(label: "test", stream: line, metadataProvider: nil))
        lineHandler.logLevel = .info
        Self.logLines(streamHandler)
        Self.logLines(lineHandler)

        #expect(
            line.lines == [
                " info test: [SharedTests] no metadata",
                " warning test: request=7 route=/summary [SharedTests] the logger's metadata",
                " error test: error=refused request=8 route=/summary [SharedTests] with the line's own",
                " notice test: request=7 [SharedTests] one key left",
            ])
        #expect(line.lines == stream.lines)
    }

    @Test func escapesEveryControlCharacterOfMessagesAndMetadata() {
        let capture = Capture()
        var handler = LineLogHandler(StreamLogHandler(label: "test", stream: capture, metadataProvider: nil))
        handler.logLevel = .info
        let logger = Logger(label: "test") { _ in handler }
        logger.info(
            "refused\r\nforged line",
            metadata: [
                "reason": "a\u{1B}[2Jb\tc\u{0}d\u{7F}e\u{85}f\u{2028}g",
                "nested": .array([.dictionary(["key": "x\ny"])]),
            ])
        #expect(
            capture.lines == [
                #" info test: nested=[["key": "x\\ny"]] reason=a\u{1B}[2Jb\tc\u{0}d\u{7F}e\u{85}f\u{2028}g [SharedTests] refused\r\nforged line"#
            ])
    }
}
