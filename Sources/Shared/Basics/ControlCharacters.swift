extension String {
    /// The text in quotes, cut to a length that keeps an error message on one readable line, its control characters
    /// escaped.
    public func quoted(limit: Int = 64) -> String {
        let cut = count > limit ? String(prefix(limit)) + "…" : self
        return "\"" + cut.escapingControlCharacters + "\""
    }

    /// The text with every control character (Unicode's `Cc`: C0, DEL and C1) and the line and paragraph separators
    /// written as a visible escape (`\n`, `\t`, `\u{1B}`), so that text from a message or a request can neither
    /// start a new log line nor hide or rewrite part of one on a terminal.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: Self.needsEscape) else { return self }
        var escaped = ""
        escaped.reserveCapacity(utf8.count + 8)
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where Self.needsEscape(scalar):
                escaped += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
