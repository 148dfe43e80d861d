import ConsumerCore
import PostgresClient
import Testing

/// What the consumer tells its operator when the database cannot take a batch: the kind (the metric's label) and one
/// sentence with the SQLSTATE, for every class of fault it waits out.
@Suite("Database faults")
struct DatabaseFaultTests {
    @Test(
        arguments: [
            (
                PostgresError(.statementFailed, "x", sqlState: "25006"), "read_only",
                "the database refuses writes (read-only) (SQLSTATE 25006)"
            ),
            (
                PostgresError(.statementFailed, "x", sqlState: "53100"), "resources",
                "the database's disk is full (SQLSTATE 53100)"
            ),
            (
                PostgresError(.statementFailed, "x", sqlState: "53300"), "resources",
                "the database has too many connections (SQLSTATE 53300)"
            ),
            (
                PostgresError(.statementFailed, "x", sqlState: "57014"), "operator_intervention",
                "an operator cancelled the work, or the server is stopping or starting (SQLSTATE 57014)"
            ),
            (
                PostgresError(.statementFailed, "x", sqlState: "08006"), "connection",
                "the database cannot be reached (SQLSTATE 08006)"
            ),
            (PostgresError(.connectionLost, "x"), "connection", "the database cannot be reached"),
            (
                PostgresError(.statementFailed, "x", sqlState: "40P01"), "conflict",
                "the batch met another transaction (SQLSTATE 40P01)"
            ),
            (
                PostgresError(.statementFailed, "x", sqlState: "42P01"), "other",
                "the database failed the batch (SQLSTATE 42P01)"
            ),
        ])
    func eachFaultIsNamedWithItsSQLState(_ error: PostgresError, _ kind: String, _ reason: String) {
        let fault = DatabaseFault(error)
        #expect(fault.kind.rawValue == kind)
        #expect(fault.description == reason)
    }

    @Test func aRefusalOfAKnownGoodEventIsTheDatabasesFault() {
        let fault = DatabaseFault(PostgresError(.statementFailed, "x", sqlState: "22023"), refusingAnyEvent: true)
        #expect(fault.kind == .refusesAnyEvent)
        #expect(fault.description == "the database refuses any event, a known-good one too (SQLSTATE 22023)")
    }
}
