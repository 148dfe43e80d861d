import Foundation

/// The OpenAPI 3 document of every path of the report API (`openapi.json`, a resource of this target), served at
/// `/openapi.json`. A test checks it against the router's routes, and scripts/check-deploy validates it against the
/// OpenAPI schema.
enum OpenAPIDocument {
    /// The document's bytes, read once. The resource is built into the target's bundle, which the image copies beside
    /// the programs: a missing one is a packaging error, reported when the API builds its routes.
    static let json: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else {
            fatalError("openapi.json is missing from the report API's resource bundle")
        }
        return text
    }()
}
