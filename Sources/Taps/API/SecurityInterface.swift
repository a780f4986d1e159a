/// The security-protocol interfaces of RFC 8922 section 5, as capability flags. A security protocol
/// in the stack registry declares the ones this implementation exposes with an API call and a test;
/// applications require, prefer, avoid or prohibit them in `SecurityParameters`.
public struct SecurityInterface: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// IPK: identities and private keys (certificates, raw keys) are configured by the application.
    public static let identitiesAndPrivateKeys = SecurityInterface(rawValue: 1 << 0)
    /// ALG: algorithms (versions, cipher suites, groups, signature schemes) are configured.
    public static let algorithms = SecurityInterface(rawValue: 1 << 1)
    /// EXT: protocol extensions (ALPN, SNI) are configured and read.
    public static let extensions = SecurityInterface(rawValue: 1 << 2)
    /// CM: sessions are cached and resumed (session tickets, ids).
    public static let sessionCache = SecurityInterface(rawValue: 1 << 3)
    /// AD: authentication delegation (the application validates the peer's identity itself).
    public static let authenticationDelegation = SecurityInterface(rawValue: 1 << 4)
    /// PSKI: external pre-shared keys are imported.
    public static let preSharedKeyImport = SecurityInterface(rawValue: 1 << 5)
    /// IV: identity validation is customised by a callback (trust decisions, pinning).
    public static let identityValidation = SecurityInterface(rawValue: 1 << 6)
    /// SAV: source-address validation (cookies / retry) before committing state.
    public static let sourceAddressValidation = SecurityInterface(rawValue: 1 << 7)
    /// CT: connection termination is signalled securely (close_notify) and truncation detected.
    public static let connectionTermination = SecurityInterface(rawValue: 1 << 8)
    /// KU: traffic keys are updated on request.
    public static let keyUpdate = SecurityInterface(rawValue: 1 << 9)
    /// SSKE: shared secret keying material is exported (RFC 5705 / RFC 8446 section 7.5).
    public static let sharedSecretKeyExport = SecurityInterface(rawValue: 1 << 10)
    /// KE: key-exchange state is exposed to the application.
    public static let keyExchange = SecurityInterface(rawValue: 1 << 11)
    /// ME: mobility events (address changes without a new handshake).
    public static let mobilityEvents = SecurityInterface(rawValue: 1 << 12)

    /// RFC 8922's short names, in its order.
    public static let all: [(SecurityInterface, String)] = [
        (.identitiesAndPrivateKeys, "IPK"), (.algorithms, "ALG"), (.extensions, "EXT"), (.sessionCache, "CM"),
        (.authenticationDelegation, "AD"), (.preSharedKeyImport, "PSKI"), (.identityValidation, "IV"),
        (.sourceAddressValidation, "SAV"), (.connectionTermination, "CT"), (.keyUpdate, "KU"),
        (.sharedSecretKeyExport, "SSKE"), (.keyExchange, "KE"), (.mobilityEvents, "ME"),
    ]

    /// Parses a short name ("pski", "SSKE").
    public init?(shortName: String) {
        guard let match = Self.all.first(where: { $0.1.lowercased() == shortName.lowercased() }) else { return nil }
        self = match.0
    }

    public var shortNames: [String] { Self.all.filter { contains($0.0) }.map(\.1) }

    public var description: String { shortNames.isEmpty ? "none" : shortNames.joined(separator: ",") }
}
