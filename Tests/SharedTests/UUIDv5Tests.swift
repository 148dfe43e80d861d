import Foundation
import Testing

@testable import Pipeline

@Suite("Name-based event ids")
struct UUIDv5Tests {
    @Test func sha1MatchesTheStandardVectors() {
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(sha1([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(hex(sha1(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            hex(sha1(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(
            hex(sha1(Array(repeating: UInt8(ascii: "a"), count: 1_000))) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func version5MatchesRFC4122Implementations() throws {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        let dns = try #require(UUID(uuidString: "6ba7b810-9dad-11d1-80b4-00c04fd430c8"))
        #expect(
            UUID(version5: "python.org", namespace: dns).uuidString.lowercased()
                == "886313e1-3b8a-5372-9b90-0c9aee199e5d")
        // Python: uuid.uuid5(uuid.UUID("6b1e0c4a-2f3d-4e8b-9a51-7c2d40e3115f"), "token:1"), and "user:1"
        #expect(
            UUID(version5: "token:1", namespace: .legacyBackfillNamespace).uuidString.lowercased()
                == "417745fd-4e44-5e4a-9bed-6f0e2036c877")
        #expect(
            UUID(version5: "user:1", namespace: .legacyBackfillNamespace).uuidString.lowercased()
                == "7d3e7fc3-7867-5190-b58e-78b80f00fa59")
    }
}
