/// How much a selection property matters (RFC 9622 section 6.2).
public enum Preference: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Select only stacks that provide the property; fail if none does.
    case require
    /// Rank stacks that provide the property first.
    case prefer
    /// The property does not affect selection.
    case noPreference
    /// Rank stacks that provide the property last.
    case avoid
    /// Select only stacks that do not provide the property.
    case prohibit

    /// The preference's name, e.g. `require`.
    public var description: String {
        switch self {
        case .require: "require"
        case .prefer: "prefer"
        case .noPreference: "noPreference"
        case .avoid: "avoid"
        case .prohibit: "prohibit"
        }
    }
}
