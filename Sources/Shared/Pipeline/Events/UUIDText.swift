import Foundation

extension UUID {
    /// Parses the 36-character form `6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11`, in either letter case; nil for
    /// anything else.
    ///
    /// Every event id is parsed at least once on its way to the rollups; Foundation's `UUID(uuidString:)` goes
    /// through `sscanf` and took a fifth of the consumer's time.
    public init?(text: String) {
        var text = text
        guard let uuid = text.withUTF8({ UUID(utf8: $0) }) else { return nil }
        self = uuid
    }

    /// Parses the UTF-8 bytes of the 36-character form, as `init?(text:)` does a string.
    public init?(utf8 text: UnsafeBufferPointer<UInt8>) {
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        guard withUnsafeMutableBytes(of: &bytes, { output in parse(text, into: output) }) else { return nil }
        self.init(uuid: bytes)
    }
}

/// Reads the 32 hex digits and 4 hyphens of `text` into the 16 bytes of `output`. Digits are checked all
/// together at the end rather than one by one: branching on each took most of the time.
private func parse(_ text: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableRawBufferPointer) -> Bool {
    let hyphen = UInt8(ascii: "-")
    guard text.count == 36, text[8] == hyphen, text[13] == hyphen, text[18] == hyphen, text[23] == hyphen else {
        return false
    }
    var invalid: UInt8 = 0
    var position = 0
    for index in 0..<16 {
        if position == 8 || position == 13 || position == 18 || position == 23 { position += 1 }
        let high = hexValue(text[position])
        let low = hexValue(text[position + 1])
        invalid |= high | low
        output[index] = high << 4 | low
        position += 2
    }
    return invalid < 16
}

/// The digit's value, or 0xFF for a character that is not a hex digit.
private func hexValue(_ character: UInt8) -> UInt8 {
    let digit = character &- UInt8(ascii: "0")
    // Setting bit 0x20 makes an ASCII letter lower case.
    let letter = (character | 0x20) &- UInt8(ascii: "a")
    return digit < 10 ? digit : letter < 6 ? letter &+ 10 : 0xFF
}
