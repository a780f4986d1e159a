/// The security-protocol interfaces of RFC 8922 section 5, as capability flags. A security protocol
/// in the stack registry declares the ones this implementation exposes with an API call and a test;
/// applications require, prefer, avoid or prohibit them in `SecurityParameters`.
public struct SecurityInterface: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// IPK: the application provides its identity, credentials (e.g., certificates) and private keys,
    /// or mechanisms to access them, for the handshake (RFC 8922 section 5.1).
    public static let identitiesAndPrivateKeys = SecurityInterface(rawValue: 1 << 0)
    /// ALG: the application chooses the algorithms supported for key exchange, signatures and
    /// cipher suites.
    public static let algorithms = SecurityInterface(rawValue: 1 << 1)
    /// EXT: the application enables or configures extensions to be negotiated, such as ALPN.
    public static let extensions = SecurityInterface(rawValue: 1 << 2)
    /// CM: the application can save and retrieve session state (tickets, keying material, server
    /// parameters) used to resume a session.
    public static let sessionCache = SecurityInterface(rawValue: 1 << 3)
    /// AD: the application delegates authentication to a third party (e.g., an AAA server).
    public static let authenticationDelegation = SecurityInterface(rawValue: 1 << 4)
    /// PSKI: the application imports pre-shared keys established out of band.
    public static let preSharedKeyImport = SecurityInterface(rawValue: 1 << 5)
    /// IV: the peer's identity is validated during the handshake, and the application can take
    /// part in or take over that validation (RFC 8922 section 5.2).
    public static let identityValidation = SecurityInterface(rawValue: 1 << 6)
    /// SAV: the handshake validates the peer's address (a cookie exchange) to avoid DoS attacks.
    public static let sourceAddressValidation = SecurityInterface(rawValue: 1 << 7)
    /// CT: the application can tear the connection and session down, which prevents truncation
    /// attacks (RFC 8922 section 5.3).
    public static let connectionTermination = SecurityInterface(rawValue: 1 << 8)
    /// KU: the handshake protocol updates its keying material on request.
    public static let keyUpdate = SecurityInterface(rawValue: 1 << 9)
    /// SSKE: the handshake protocol produces shared secrets for application-specific uses.
    public static let sharedSecretKeyExport = SecurityInterface(rawValue: 1 << 10)
    /// KE: the record protocol signals that its keys expire (a time or usage deadline).
    public static let keyExpiration = SecurityInterface(rawValue: 1 << 11)
    /// ME: the record protocol is told that the connection moved to another transport or
    /// interface (mobility), which may reset address validation.
    public static let mobilityEvents = SecurityInterface(rawValue: 1 << 12)

    /// RFC 8922's short names, in its order.
    public static let all: [(SecurityInterface, String)] = [
        (.identitiesAndPrivateKeys, "IPK"), (.algorithms, "ALG"), (.extensions, "EXT"), (.sessionCache, "CM"),
        (.authenticationDelegation, "AD"), (.preSharedKeyImport, "PSKI"), (.identityValidation, "IV"),
        (.sourceAddressValidation, "SAV"), (.connectionTermination, "CT"), (.keyUpdate, "KU"),
        (.sharedSecretKeyExport, "SSKE"), (.keyExpiration, "KE"), (.mobilityEvents, "ME"),
    ]

    /// Parses a short name ("pski", "SSKE").
    public init?(shortName: String) {
        guard let match = Self.all.first(where: { $0.1.lowercased() == shortName.lowercased() }) else { return nil }
        self = match.0
    }

    /// RFC 8922's short names of the interfaces in the set, e.g. `["IPK", "PSKI"]`.
    public var shortNames: [String] { Self.all.filter { contains($0.0) }.map(\.1) }

    /// The short names, comma separated, or `none`.
    public var description: String { shortNames.isEmpty ? "none" : shortNames.joined(separator: ",") }
}
