import Basics
import CLibPQ
import Foundation
import Logging
import Synchronization

/// One PostgreSQL connection over libpq.
///
/// The actor runs on a thread of its own (`ThreadExecutor`), the only thread that touches the `PGconn`, so a
/// slow statement blocks that thread and never Swift's cooperative pool. Values always travel as statement
/// parameters, never spliced into SQL text. Several statements that belong together run in one hop with
/// `withTransaction(_:)`, whose closure runs on the connection's thread.
public actor PostgresConnection {
    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private var connection: OpaquePointer?
    /// The name of each statement prepared on this connection, by its SQL text: a statement is parsed and
    /// planned once per connection, not once per call.
    private var preparedStatements: [String: String] = [:]
    private let noticeSink: NoticeSink
    private let broken = Atomic<Bool>(false)
    /// Cancels a running statement from another thread; set once connected.
    private nonisolated let canceller = StatementCanceller()

    private init(logger: Logger) {
        self.executor = ThreadExecutor(name: "postgres")
        self.noticeSink = NoticeSink(logger: logger)
    }

    /// Connects, or throws `connectionFailed` with libpq's text in `debugDescription`.
    public static func connect(_ configuration: PostgresConfiguration, logger: Logger) async throws(PostgresError)
        -> PostgresConnection
    {
        let connection = PostgresConnection(logger: logger)
        try await connection.open(configuration)
        return connection
    }

    /// Connects, runs `body` with the connection, and closes it whatever `body` does.
    public static func withConnection<T>(
        _ configuration: PostgresConfiguration, logger: Logger, isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connect(configuration, logger: logger)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    isolated deinit {
        if let connection { PQfinish(connection) }
        executor.shutdown()
    }

    /// Closes the connection and ends its thread, waiting for both; any later statement throws `connectionLost`.
    public nonisolated func close() async {
        await finish()
        await executor.join()
    }

    private func finish() {
        if let connection { PQfinish(connection) }
        connection = nil
        broken.store(true, ordering: .relaxed)
        executor.shutdown()
    }

    /// False once the connection has broken or was closed; a pool drops such a connection instead of reusing it.
    public nonisolated var isUsable: Bool { !broken.load(ordering: .relaxed) }

    private func open(_ configuration: PostgresConfiguration) throws(PostgresError) {
        let parameters = configuration.connectionParameters
        let connection = withCStrings(parameters.map(\.0) + [nil]) { keywords in
            withCStrings(parameters.map(\.1) + [nil]) { values in PQconnectdbParams(keywords, values, 0) }
        }
        self.connection = connection
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            broken.store(true, ordering: .relaxed)
            let text = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            throw PostgresError(
                .connectionFailed, "could not connect to the database",
                serverMessage: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        canceller.attach(PQgetCancel(connection))
        PQsetNoticeReceiver(
            connection,
            { context, result in
                guard let context, let result else { return }
                let sink = Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue()
                sink.log(result)
            }, Unmanaged.passUnretained(noticeSink).toOpaque())
    }

    /// Runs one statement with `parameters` bound to `$1`, `$2`, ...; returns its rows. The statement is
    /// prepared on first use and reused after, so `sql` should be a fixed text, values always parameters.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws(PostgresError)
        -> PostgresRows
    {
        let connection = try usableConnection()
        if canceller.isCancelled {
            throw PostgresError(.cancelled, "the statement was cancelled before it started")
        }
        let name = try preparedStatement(sql, parameterCount: parameters.count, on: connection)
        let result = withParameters(parameters.map { $0?.postgresParameter }) { values, lengths, formats in
            PQexecPrepared(connection, name, Int32(parameters.count), values, lengths, formats, 0)
        }
        defer { PQclear(result) }
        return try rows(of: result)
    }

    private func preparedStatement(_ sql: String, parameterCount: Int, on connection: OpaquePointer)
        throws(PostgresError) -> String
    {
        if let name = preparedStatements[sql] { return name }
        let name = "s\(preparedStatements.count + 1)"
        let result = PQprepare(connection, name, sql, Int32(parameterCount), nil)
        defer { PQclear(result) }
        _ = try rows(of: result)
        preparedStatements[sql] = name
        return name
    }

    /// Runs `body`, whose statements on this connection are cancelled in PostgreSQL if the calling task is
    /// cancelled: one running stops with SQLSTATE 57014, and one not started yet throws `cancelled`. A server that
    /// lends the connection to one request at a time (`PostgresPool`) makes a request's queries end with it.
    public nonisolated func withCancellableStatements<T>(_ body: () async throws -> T) async throws -> T {
        let lend = canceller.beginLend()
        defer { canceller.endLend() }
        return try await withTaskCancellationHandler {
            try await body()
        } onCancel: {
            canceller.cancel(lend)
        }
    }

    /// Runs SQL text that takes no parameters and may hold several statements (a migration).
    public func execute(_ sql: String) throws(PostgresError) {
        let connection = try usableConnection()
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        _ = try rows(of: result)
    }

    /// Runs `body` in a transaction on the connection's thread: committed when it returns, rolled back when it
    /// throws. A failed `COMMIT` (a serialization failure) throws too, and nothing of the body took effect.
    public func withTransaction<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let result = try body(self)
            try execute("COMMIT")
            return result
        } catch {
            if isUsable { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// Listens on `channel` (`LISTEN`), whose notifications `notifications(waitingUpTo:)` then returns.
    public func listen(_ channel: String) throws(PostgresError) {
        guard PostgresConfiguration.isPlainIdentifier(channel) else {
            throw PostgresError(.unexpectedResult, "a channel name must be a lower-case SQL identifier")
        }
        try execute("LISTEN \(channel)")
    }

    /// The notifications that arrived, waiting up to `timeout` for the first when none has. Throws `connectionLost`
    /// when the connection broke, which is how a listener learns it may have missed some.
    public func notifications(waitingUpTo timeout: Duration) throws(PostgresError) -> [PostgresNotification] {
        let connection = try usableConnection()
        var received = takeNotifications(connection)
        guard received.isEmpty else { return received }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(clamping: timeout.milliseconds))
        guard ready >= 0 || errno == EINTR else { throw lost(connection) }
        if ready > 0 {
            guard PQconsumeInput(connection) == 1 else { throw lost(connection) }
            received = takeNotifications(connection)
        }
        return received
    }

    private func takeNotifications(_ connection: OpaquePointer) -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notification = PQnotifies(connection) {
            received.append(
                PostgresNotification(
                    channel: String(cString: notification.pointee.relname),
                    payload: String(cString: notification.pointee.extra)))
            PQfreemem(notification)
        }
        return received
    }

    private func lost(_ connection: OpaquePointer) -> PostgresError {
        broken.store(true, ordering: .relaxed)
        return PostgresError(
            .connectionLost, "the database connection was lost",
            serverMessage: String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs `body` in a transaction that is always rolled back: to learn whether statements would fail, without
    /// keeping what they do.
    public func withRolledBackTransaction<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) throws -> T)
        throws -> T
    {
        try execute("BEGIN")
        defer { if isUsable { try? execute("ROLLBACK") } }
        return try body(self)
    }

    private func usableConnection() throws(PostgresError) -> OpaquePointer {
        guard let connection, isUsable else {
            throw PostgresError(.connectionLost, "the database connection is broken")
        }
        return connection
    }

    private func rows(of result: OpaquePointer?) throws(PostgresError) -> PostgresRows {
        switch result.map(PQresultStatus) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            guard let result else { break }
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
            var cells: [String?] = []
            cells.reserveCapacity(rowCount * columnCount)
            for row in 0..<Int32(rowCount) {
                for column in 0..<Int32(columnCount) {
                    cells.append(
                        PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column)))
                }
            }
            let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
            return PostgresRows(columns: columns, cells: cells, affectedRows: affected)
        default:
            break
        }
        throw statementError(result)
    }

    private func statementError(_ result: OpaquePointer?) -> PostgresError {
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            broken.store(true, ordering: .relaxed)
            let text = connection.map { String(cString: PQerrorMessage($0)) } ?? ""
            return PostgresError(
                .connectionLost, "the database connection was lost",
                serverMessage: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard let result else {
            return PostgresError(
                .statementFailed, "the statement failed", serverMessage: String(cString: PQerrorMessage(connection)))
        }
        let sqlState = field(result, clibpq_diag_sqlstate)
        var serverMessage = field(result, clibpq_diag_message_primary) ?? ""
        if let detail = field(result, clibpq_diag_message_detail) { serverMessage += " (\(detail))" }
        return PostgresError(.statementFailed, "the statement failed", sqlState: sqlState, serverMessage: serverMessage)
    }
}

private func field(_ result: OpaquePointer, _ code: some BinaryInteger) -> String? {
    PQresultErrorField(result, Int32(code)).map { String(cString: $0) }
}

/// Cancels the statement running on a connection, from any thread (libpq's `PQcancel`, which is made for it), but
/// only within the lend it was asked in: a cancellation that comes as a lend ends never reaches the next borrower's
/// statements.
private final class StatementCanceller: Sendable {
    private struct State {
        /// The `PGcancel *`, as its address: libpq documents `PQcancel` as safe to call from any thread, and it is
        /// only called under this state's lock.
        var handle: Int = 0
        var lend = 0
        var isLent = false
        var isCancelled = false
    }

    private let state = Mutex(State())

    deinit {
        state.withLock { state in
            if let handle = OpaquePointer(bitPattern: state.handle) { PQfreeCancel(handle) }
        }
    }

    func attach(_ handle: OpaquePointer?) {
        let address = Int(bitPattern: handle)
        state.withLock { $0.handle = address }
    }

    var isCancelled: Bool { state.withLock { $0.isLent && $0.isCancelled } }

    func beginLend() -> Int {
        state.withLock { state in
            state.lend += 1
            state.isLent = true
            state.isCancelled = false
            return state.lend
        }
    }

    func endLend() {
        state.withLock { state in
            state.isLent = false
            state.isCancelled = false
        }
    }

    /// Cancels what runs in `lend`, if it is still the current one. `PQcancel` opens a connection of its own to the
    /// server, so it runs on a queue of its own rather than on the caller's thread (an event loop, which a server that
    /// does not answer would block); the lend is checked again there, just before the request is sent.
    func cancel(_ lend: Int) {
        let isCurrent = state.withLock { state -> Bool in
            guard state.isLent, state.lend == lend, state.handle != 0 else { return false }
            state.isCancelled = true
            return true
        }
        guard isCurrent else { return }
        Self.requests.async {
            guard let handle = self.state.withLock({ $0.isLent && $0.lend == lend ? $0.handle : nil }),
                let canceller = OpaquePointer(bitPattern: handle)
            else { return }
            var message = [CChar](repeating: 0, count: 256)
            _ = PQcancel(canceller, &message, Int32(message.count))
        }
    }

    /// Where cancel requests are sent from.
    private static let requests = DispatchQueue(label: "postgres.cancel", attributes: .concurrent)
}

/// A notification sent with `NOTIFY` or `pg_notify` to a channel this connection listens on.
public struct PostgresNotification: Sendable, Equatable {
    public var channel: String
    public var payload: String

    public init(channel: String, payload: String) {
        self.channel = channel
        self.payload = payload
    }
}

/// Routes the server's notices (`RAISE NOTICE`, "relation already exists, skipping") to the logger instead of
/// libpq's default, standard error.
private final class NoticeSink: Sendable {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func log(_ result: OpaquePointer) {
        let message = field(result, clibpq_diag_message_primary) ?? ""
        let level: Logger.Level = field(result, clibpq_diag_severity) == "WARNING" ? .warning : .debug
        logger.log(level: level, "PostgreSQL sent a notice", metadata: [LogKey.notice: "\(message)"])
    }
}

/// Calls `body` with libpq's parameter arrays for `parameters` (values, lengths and formats; a NULL value for
/// nil), valid only during the call.
private func withParameters<R>(
    _ parameters: [PostgresParameter?],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R
) -> R {
    var values: [UnsafePointer<CChar>?] = []
    var lengths: [Int32] = []
    var formats: [Int32] = []
    for parameter in parameters {
        switch parameter {
        case nil:
            values.append(nil)
            lengths.append(0)
            formats.append(0)
        case .text(let text):
            values.append(UnsafePointer(strdup(text)))
            lengths.append(0)
            formats.append(0)
        case .binary(let bytes):
            let copy = malloc(max(bytes.count, 1)).assumingMemoryBound(to: UInt8.self)
            _ = UnsafeMutableBufferPointer(start: copy, count: bytes.count).initialize(from: bytes)
            values.append(UnsafeRawPointer(copy).assumingMemoryBound(to: CChar.self))
            lengths.append(Int32(bytes.count))
            formats.append(1)
        }
    }
    defer { values.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return values.withUnsafeBufferPointer { values in
        lengths.withUnsafeBufferPointer { lengths in
            formats.withUnsafeBufferPointer { formats in
                body(values.baseAddress, lengths.baseAddress, formats.baseAddress)
            }
        }
    }
}

/// Calls `body` with an array of C strings for `strings` (NULL for nil, and NULL for an empty array), valid
/// only during the call.
private func withCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies: [UnsafePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) }.map { UnsafePointer($0) } }
    defer { copies.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return copies.withUnsafeBufferPointer { body($0.baseAddress) }
}
