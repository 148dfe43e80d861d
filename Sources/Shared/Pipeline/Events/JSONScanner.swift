import Foundation

/// A JSON value as the event decoder sees it: the scalars it reads, and the kind of anything else.
enum JSONScalar: Equatable {
    case string(JSONString)
    /// A number, with its value when it is an integer that fits in 64 bits.
    case number(integer: Int64?)
    case bool
    case null
    case object
    case array

    /// How a rejection names this kind of value: "user_id must be an integer, got a string".
    var kindDescription: String {
        switch self {
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        case .object: "an object"
        case .array: "an array"
        }
    }
}

/// A JSON string as the scanner read it: where its bytes lie in the document when it holds no escape, as nearly
/// every string does, so that reading it copies nothing; else its text with the escapes resolved.
enum JSONString: Equatable {
    case span(Range<Int>)
    case resolved(String)
}

extension UnsafeBufferPointer<UInt8> {
    /// Whether these are the bytes of `name`: how the decoder matches keys and types without building Strings.
    func matches(_ name: [UInt8]) -> Bool {
        guard count == name.count else { return false }
        guard let baseAddress else { return true }
        return memcmp(baseAddress, name, count) == 0
    }
}

/// Why bytes are not a JSON document; `offset` is where the scanner gave up.
struct JSONSyntaxError: Error {
    var offset: Int
}

/// A strict RFC 8259 scanner over UTF-8 bytes, for one flat object whose fields the caller picks out.
///
/// Nested values are checked for syntax and skipped without recursion, so no body can exhaust the stack.
struct JSONScanner {
    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var offset = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Reads the top-level value: for an object, calls `field` with each key, which either reads the value with
    /// `scalar()` or leaves it to be skipped. Returns the kind of the top-level value.
    mutating func scanDocument(field: (JSONString, inout JSONScanner) throws(JSONSyntaxError) -> Void)
        throws(JSONSyntaxError) -> JSONScalar
    {
        skipWhitespace()
        let top: JSONScalar
        if peek() == UInt8(ascii: "{") {
            offset += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                offset += 1
            } else {
                while true {
                    skipWhitespace()
                    let key = try string()
                    skipWhitespace()
                    try expect(UInt8(ascii: ":"))
                    skipWhitespace()
                    let before = offset
                    try field(key, &self)
                    if offset == before { try skipValue() }
                    skipWhitespace()
                    if peek() == UInt8(ascii: ",") {
                        offset += 1
                        continue
                    }
                    try expect(UInt8(ascii: "}"))
                    break
                }
            }
            top = .object
        } else {
            top = try scalar()
        }
        skipWhitespace()
        guard offset == bytes.count else { throw JSONSyntaxError(offset: offset) }
        return top
    }

    /// Reads one value: strings and numbers in full, containers skipped and reported by kind.
    mutating func scalar() throws(JSONSyntaxError) -> JSONScalar {
        switch peek() {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"):
            try skipValue()
            return .object
        case UInt8(ascii: "["):
            try skipValue()
            return .array
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            return .number(integer: try number())
        }
    }

    /// Calls `body` with the UTF-8 bytes of `string`, a string of this document.
    func withUTF8<Result>(of string: JSONString, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        switch string {
        case .span(let range): return body(UnsafeBufferPointer(rebasing: bytes[range]))
        case .resolved(var text): return text.withUTF8(body)
        }
    }

    /// The text of `string`, a string of this document.
    func text(of string: JSONString) -> String {
        withUTF8(of: string) { String(decoding: $0, as: UTF8.self) }
    }

    private func peek() -> UInt8? {
        offset < bytes.count ? bytes[offset] : nil
    }

    private mutating func expect(_ byte: UInt8) throws(JSONSyntaxError) {
        guard peek() == byte else { throw JSONSyntaxError(offset: offset) }
        offset += 1
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
                || byte == UInt8(ascii: "\t")
        {
            offset += 1
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard offset + count <= bytes.count else { throw JSONSyntaxError(offset: offset) }
        for index in 0..<count where bytes[offset + index] != word.utf8Start[index] {
            throw JSONSyntaxError(offset: offset + index)
        }
        offset += count
    }

    /// Reads a number; returns its value when it is written as an integer and fits in 64 bits.
    private mutating func number() throws(JSONSyntaxError) -> Int64? {
        let start = offset
        var isInteger = true
        if peek() == UInt8(ascii: "-") { offset += 1 }
        guard let first = peek(), first.isASCIIDigit else { throw JSONSyntaxError(offset: offset) }
        offset += 1
        if first != UInt8(ascii: "0") {
            while let byte = peek(), byte.isASCIIDigit { offset += 1 }
        }
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            offset += 1
            guard let byte = peek(), byte.isASCIIDigit else { throw JSONSyntaxError(offset: offset) }
            while let byte = peek(), byte.isASCIIDigit { offset += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            isInteger = false
            offset += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { offset += 1 }
            guard let byte = peek(), byte.isASCIIDigit else { throw JSONSyntaxError(offset: offset) }
            while let byte = peek(), byte.isASCIIDigit { offset += 1 }
        }
        guard isInteger else { return nil }
        let isNegative = bytes[start] == UInt8(ascii: "-")
        var value: Int64 = 0
        for byte in bytes[(isNegative ? start + 1 : start)..<offset] {
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (shifted, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowedAgain) =
                isNegative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflowed, !overflowedAgain else { return nil }
            value = next
        }
        return value
    }

    /// Reads a string, resolving escapes. The bytes are already known to be valid UTF-8.
    private mutating func string() throws(JSONSyntaxError) -> JSONString {
        try expect(UInt8(ascii: "\""))
        let start = offset
        while let byte = peek(), byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw JSONSyntaxError(offset: offset) }
            offset += 1
        }
        if peek() == UInt8(ascii: "\"") {
            offset += 1
            return .span(start..<offset - 1)
        }
        var result = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
        while true {
            guard let byte = peek() else { throw JSONSyntaxError(offset: offset) }
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                return .resolved(result)
            case UInt8(ascii: "\\"):
                guard let escaped = peek() else { throw JSONSyntaxError(offset: offset) }
                offset += 1
                switch escaped {
                case UInt8(ascii: "\""): result.append("\"")
                case UInt8(ascii: "\\"): result.append("\\")
                case UInt8(ascii: "/"): result.append("/")
                case UInt8(ascii: "b"): result.append("\u{08}")
                case UInt8(ascii: "f"): result.append("\u{0C}")
                case UInt8(ascii: "n"): result.append("\n")
                case UInt8(ascii: "r"): result.append("\r")
                case UInt8(ascii: "t"): result.append("\t")
                case UInt8(ascii: "u"): result.unicodeScalars.append(try unicodeEscape())
                default: throw JSONSyntaxError(offset: offset - 1)
                }
            default:
                guard byte >= 0x20 else { throw JSONSyntaxError(offset: offset - 1) }
                let runStart = offset - 1
                while let next = peek(), next != UInt8(ascii: "\""), next != UInt8(ascii: "\\"), next >= 0x20 {
                    offset += 1
                }
                result += String(decoding: UnsafeBufferPointer(rebasing: bytes[runStart..<offset]), as: UTF8.self)
            }
        }
    }

    /// Reads the `XXXX` after `\u`, and a second `\uXXXX` when the first is a high surrogate.
    private mutating func unicodeEscape() throws(JSONSyntaxError) -> Unicode.Scalar {
        let high = try hex4()
        if (0xD800..<0xDC00).contains(high) {
            try expect(UInt8(ascii: "\\"))
            try expect(UInt8(ascii: "u"))
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw JSONSyntaxError(offset: offset) }
            let value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            guard let scalar = Unicode.Scalar(value) else { throw JSONSyntaxError(offset: offset) }
            return scalar
        }
        guard let scalar = Unicode.Scalar(high) else { throw JSONSyntaxError(offset: offset) }
        return scalar
    }

    private mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek() else { throw JSONSyntaxError(offset: offset) }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONSyntaxError(offset: offset)
            }
            value = value << 4 | UInt32(digit)
            offset += 1
        }
        return value
    }

    /// Skips one value of any kind, checking its syntax, with an explicit stack instead of recursion.
    private mutating func skipValue() throws(JSONSyntaxError) {
        var open: [UInt8] = []
        while true {
            // A value starts here.
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: "{"):
                offset += 1
                skipWhitespace()
                if peek() == UInt8(ascii: "}") {
                    offset += 1
                } else {
                    open.append(UInt8(ascii: "}"))
                    try memberKey()
                    continue
                }
            case UInt8(ascii: "["):
                offset += 1
                skipWhitespace()
                if peek() == UInt8(ascii: "]") {
                    offset += 1
                } else {
                    open.append(UInt8(ascii: "]"))
                    continue
                }
            default:
                _ = try scalar()
            }
            // A value ended: close containers until one expects another element.
            while let closing = open.last {
                skipWhitespace()
                if peek() == UInt8(ascii: ",") {
                    offset += 1
                    if closing == UInt8(ascii: "}") { try memberKey() }
                    break
                }
                try expect(closing)
                open.removeLast()
            }
            if open.isEmpty { return }
        }
    }

    private mutating func memberKey() throws(JSONSyntaxError) {
        skipWhitespace()
        _ = try string()
        skipWhitespace()
        try expect(UInt8(ascii: ":"))
    }
}
