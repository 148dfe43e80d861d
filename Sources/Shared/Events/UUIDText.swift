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

/// Reads the 32 hex digits and 4 hyphens of `text` into the 16 bytes of `output`.
private func parse(_ text: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableRawBufferPointer) -> Bool {
    guard text.count == 36 else { return false }
    var position = 0
    for index in 0..<16 {
        if index == 4 || index == 6 || index == 8 || index == 10 {
            guard text[position] == UInt8(ascii: "-") else { return false }
            position += 1
        }
        guard let high = hexValue(text[position]), let low = hexValue(text[position + 1]) else { return false }
        output[index] = high << 4 | low
        position += 2
    }
    return true
}

private func hexValue(_ character: UInt8) -> UInt8? {
    let digit = character &- UInt8(ascii: "0")
    if digit < 10 { return digit }
    // Setting bit 0x20 makes an ASCII letter lower case.
    let letter = (character | 0x20) &- UInt8(ascii: "a")
    return letter < 6 ? letter + 10 : nil
}
