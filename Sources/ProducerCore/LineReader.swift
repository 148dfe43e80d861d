import Foundation

/// The lines of a file handle, read in 64 KiB chunks, without their line feeds.
public struct LineReader: AsyncSequence {
    public typealias Element = [UInt8]
    let handle: FileHandle

    public init(_ handle: FileHandle) {
        self.handle = handle
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle
        var buffer: [UInt8] = []
        var start = 0
        var atEnd = false

        public mutating func next() async throws -> [UInt8]? {
            while true {
                if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    defer { start = newline + 1 }
                    return Array(buffer[start..<newline])
                }
                if atEnd {
                    guard start < buffer.count else { return nil }
                    defer { start = buffer.count }
                    return Array(buffer[start...])
                }
                buffer.removeFirst(start)
                start = 0
                let chunk = try handle.read(upToCount: 65_536) ?? Data()
                if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle) }
}
