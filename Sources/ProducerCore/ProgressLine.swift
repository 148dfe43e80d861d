import Foundation

/// A progress line on standard error, redrawn at most four times a second: count, rate, and ETA when the total is
/// known. Silent when standard error is not a terminal, so logs and pipes get only the final line.
public final class ProgressLine {
    private let started = ContinuousClock.now
    private var lastDrawn: ContinuousClock.Instant?
    private let isTerminal = isatty(STDERR_FILENO) == 1
    public var total: Int?

    public init(total: Int? = nil) {
        self.total = total
    }

    public func update(count: Int) {
        guard isTerminal else { return }
        let now = ContinuousClock.now
        if let lastDrawn, now - lastDrawn < .milliseconds(250) { return }
        lastDrawn = now
        let seconds = max(0.001, (now - started).seconds)
        let rate = Double(count) / seconds
        var line = "\r\(count)"
        if let total { line += " of \(total)" }
        line += String(format: " events, %.0f/s", rate)
        if let total, rate > 0, total > count { line += String(format: ", %.0f s left", Double(total - count) / rate) }
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
    }

    /// Clears the progress line before the final report.
    public func finish() {
        guard isTerminal, lastDrawn != nil else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
