/// A DTLS Key Management Method identifier (KMId; draft-ietf-tsvwg-sctp-dtls-chunk, "DTLS Key
/// Management Method Identifiers").
public struct DTLSKeyManagementMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// KMId 0: pre-shared cryptographic parameters, supplied by the application.
    public static let preSharedParameters = DTLSKeyManagementMethod(rawValue: 0)
    /// KMId 192: TLS 1.3 key management (draft-porfiri-tsvwg-sctp-dtls-handshake).
    public static let tls13 = DTLSKeyManagementMethod(rawValue: 192)
    /// DTLS 1.3 key management (draft-westerlund-tsvwg-sctp-dtls-handshake). That draft asks for a
    /// 16-bit identifier the chunk draft's 8-bit registry cannot hold; 193, from the first-come
    /// range, stands in for it.
    public static let dtls13 = DTLSKeyManagementMethod(rawValue: 193)

    public var description: String {
        switch self {
        case .preSharedParameters: "pre-shared parameters (KMId 0)"
        case .tls13: "TLS 1.3 (KMId 192)"
        case .dtls13: "DTLS 1.3 (KMId 193)"
        default: "KMId \(rawValue)"
        }
    }
}

/// The DTLS Key Management Parameter (type 0x8006) of INIT and INIT ACK (draft "DTLS Key Management
/// Parameter"): tie breaker, the R, S and C flags, and KMIds in descending preference.
struct DTLSKeyManagementParameter: Equatable, Sendable {
    static let type: UInt16 = 0x8006

    struct Roles: OptionSet, Hashable, Sendable {
        let rawValue: UInt8
        static let client = Roles(rawValue: 0x01)
        static let server = Roles(rawValue: 0x02)
        /// The R bit: protected SCTP restart supported.
        static let restart = Roles(rawValue: 0x04)
    }

    // A change to a field makes the parameter one of ours, encoded afresh.
    var tieBreaker: UInt32 { didSet { receivedBytes = nil } }
    var flags: Roles { didSet { receivedBytes = nil } }
    var methods: [DTLSKeyManagementMethod] { didSet { receivedBytes = nil } }
    /// A received parameter's bytes exactly as they came (reserved bits included), until a field changes.
    private var receivedBytes: [UInt8]? = nil

    init(tieBreaker: UInt32, flags: Roles, methods: [DTLSKeyManagementMethod]) {
        self.tieBreaker = tieBreaker
        self.flags = flags
        self.methods = methods
    }

    /// The parameter as sent or received, header included and padding excluded: the bytes that key
    /// derivation binds (draft "DTLS Key Management Method Considerations").
    var wireBytes: [UInt8] {
        if let receivedBytes { return receivedBytes }
        let length = 9 + methods.count
        var bytes: [UInt8] = [0x80, 0x06, UInt8(length >> 8), UInt8(length & 0xFF)]
        bytes += withUnsafeBytes(of: tieBreaker.bigEndian, Array.init)
        bytes.append(flags.rawValue & 0x07)
        bytes += methods.map(\.rawValue)
        return bytes
    }

    /// The wire bytes with zero padding to a multiple of 4, as the parameter goes into a chunk.
    var paddedBytes: [UInt8] {
        var bytes = wireBytes
        while bytes.count % 4 != 0 { bytes.append(0) }
        return bytes
    }

    /// Parses a parameter (type and length included; padding, if present, beyond the length).
    /// Nil when it is not a 0x8006 parameter, lists no KMId, or is cut short.
    static func parse(_ bytes: some Collection<UInt8>) -> DTLSKeyManagementParameter? {
        let bytes = Array(bytes)
        guard bytes.count >= 10, bytes[0] == 0x80, bytes[1] == 0x06 else { return nil }
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        guard length >= 10, length <= bytes.count else { return nil }
        let tieBreaker = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])
        // The five reserved bits are ignored.
        var parameter = DTLSKeyManagementParameter(tieBreaker: tieBreaker, flags: Roles(rawValue: bytes[8] & 0x07),
                                                   methods: bytes[9..<length].map(DTLSKeyManagementMethod.init(rawValue:)))
        parameter.receivedBytes = Array(bytes[0..<length])
        return parameter
    }
}
