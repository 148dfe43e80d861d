import Testing

@testable import PostgresClient

@Suite("bytea read from PostgreSQL's text form")
struct PostgresHexTests {
    @Test func everyByteSurvivesItsHexForm() {
        #expect([UInt8](postgresHex: "\\x") == [])
        #expect([UInt8](postgresHex: "\\x00ff7f80a9") == [0x00, 0xFF, 0x7F, 0x80, 0xA9])
        let all = [UInt8](0...255)
        let text = "\\x" + all.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        #expect([UInt8](postgresHex: text) == all)
    }

    @Test(arguments: [
        "", "\\", "x00", "00", "\\x0", "\\x000", "\\y00", "/x00", "\\x0g", "\\xg0", "\\x0A", "\\x:0", "\\x/0", "\\x`0",
        "\\x00 ",
    ])
    func anythingElseIsRefused(text: String) {
        #expect([UInt8](postgresHex: text) == nil)
    }
}
