import Foundation
import Pipeline
import Testing

@Suite("Event ids parsed from text")
struct UUIDTextTests {
    @Test func theCanonicalFormParsesInEitherCase() throws {
        let expected = try #require(UUID(uuidString: "6F1C1F0E-5A53-4C8E-9D7E-2F4C1B9A0D11"))
        #expect(UUID(text: "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11") == expected)
        #expect(UUID(text: "6F1C1F0E-5A53-4C8E-9D7E-2f4c1b9a0d11") == expected)
        #expect(
            UUID(text: "00000000-0000-0000-0000-000000000000")
                == UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))
        for _ in 0..<100 {
            let random = UUID()
            #expect(UUID(text: random.uuidString.lowercased()) == random)
        }
    }

    @Test(arguments: [
        "", "6f1c1f0e5a534c8e9d7e2f4c1b9a0d11", "{6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11}",
        "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d1", "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d111",
        "6f1c1f0e-5a534-c8e-9d7e-2f4c1b9a0d11", "6f1c1f0g-5a53-4c8e-9d7e-2f4c1b9a0d11",
        " 6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11", "6f1c1f0e_5a53_4c8e_9d7e_2f4c1b9a0d11",
        // The characters beside the digits' and letters' ranges, first and last.
        "/f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11", "6f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d1:",
        "`f1c1f0e-5a53-4c8e-9d7e-2f4c1b9a0d11", "6F1C1F0E-5A53-4C8E-9D7E-2F4C1B9A0D1G",
    ])
    func anythingElseIsRefused(text: String) {
        #expect(UUID(text: text) == nil)
    }
}
