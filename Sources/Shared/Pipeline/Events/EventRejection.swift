/// Why a message cannot be counted. Its `description` is the text of the `x-rejection-reason` header that goes
/// with the message to `coworking.dead`, and `kind` is the label of the dead-letter metric.
public struct EventRejection: Error, Sendable, Equatable, CustomStringConvertible {
    /// A small, fixed set of causes, fit for a metric label.
    public enum Kind: String, Sendable, CaseIterable {
        case tooLarge = "too_large"
        case notUTF8 = "not_utf8"
        case notJSON = "not_json"
        case notObject = "not_object"
        case missingField = "missing_field"
        case wrongType = "wrong_type"
        case invalidValue = "invalid_value"
        case unknownType = "unknown_type"
        case tooOld = "too_old"
        case beyondDedupHorizon = "beyond_dedup_horizon"
        case tooFarInFuture = "too_far_in_future"
    }

    public var kind: Kind
    /// One sentence naming the field and the rule it breaks.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
