import Foundation

/// Runs `body`, which blocks (a socket read, a child process), on a thread of its own and waits for it without holding
/// a thread of Swift's cooperative pool. A test's server in the same process answers on that pool, which has one
/// thread per core: two blocking waits on a two-core machine would leave the server no thread to answer them with.
public func offThePool<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Runs `arguments` (a program found on PATH, then its arguments) off the pool, and returns its exit status and
/// standard output.
public func runToEnd(_ arguments: [String], in directory: URL? = nil) async throws -> (status: Int32, output: Data) {
    try await offThePool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, data)
    }
}
