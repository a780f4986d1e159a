/// An external pre-shared key (RFC 8922 PSKI; RFC 9622 section 6.3.6): TLS 1.3 external PSKs
/// (RFC 8446 section 4.2.11) and the PSK cipher suites of TLS 1.2 and DTLS 1.2 (RFC 4279, RFC 5489).
///
/// By default the key is combined with an (EC)DHE exchange (TLS 1.3 psk_dhe_ke, TLS 1.2 ECDHE-PSK
/// and DHE-PSK suites), which keeps forward secrecy. `allowsKeyExchangeWithoutDHE` also allows
/// psk_ke and the plain PSK suites, which have none.
public struct PreSharedKey: Sendable, Hashable {
    /// The identity the client names the key by; 1 to 128 bytes, no NUL.
    public var identity: [UInt8]
    /// The secret itself: at least 16 bytes (`minimumKeyLength`), at most 256.
    public var key: [UInt8]
    /// The hash the key is bound to (TLS 1.3 selects a cipher suite with this hash).
    public var hash: Hash
    /// Also allows key exchange by the pre-shared key alone (TLS 1.3 psk_ke, the plain PSK suites of
    /// TLS 1.2), which gives up forward secrecy. Off by default.
    public var allowsKeyExchangeWithoutDHE: Bool

    /// A hash function a pre-shared key is bound to (RFC 8446 section 4.2.11).
    public enum Hash: String, Sendable, Hashable {
        /// SHA-256: TLS_AES_128_GCM_SHA256 and TLS_CHACHA20_POLY1305_SHA256 in TLS 1.3.
        case sha256 = "SHA256"
        /// SHA-384: TLS_AES_256_GCM_SHA384 in TLS 1.3.
        case sha384 = "SHA384"
    }

    /// A key named by a binary identity.
    public init(identity: [UInt8], key: [UInt8], hash: Hash = .sha256, allowsKeyExchangeWithoutDHE: Bool = false) {
        self.identity = identity
        self.key = key
        self.hash = hash
        self.allowsKeyExchangeWithoutDHE = allowsKeyExchangeWithoutDHE
    }

    /// A key named by a text identity (its UTF-8 bytes).
    public init(identity: String, key: [UInt8], hash: Hash = .sha256, allowsKeyExchangeWithoutDHE: Bool = false) {
        self.init(identity: Array(identity.utf8), key: key, hash: hash, allowsKeyExchangeWithoutDHE: allowsKeyExchangeWithoutDHE)
    }

    /// Shortest key accepted: 128 bits, the strength of the weakest AEAD it is used with.
    public static let minimumKeyLength = 16

    func validate() throws(TransportError) {
        guard key.count >= Self.minimumKeyLength else {
            throw .invalidArgument("preSharedKey.key: \(key.count) bytes; at least \(Self.minimumKeyLength) are needed")
        }
        guard key.count <= 256 else { throw .invalidArgument("preSharedKey.key: \(key.count) bytes; at most 256 are supported") }
        // TLS 1.2's PSK callbacks pass the identity as a C string of at most 128 bytes.
        guard (1...128).contains(identity.count), !identity.contains(0) else {
            throw .invalidArgument("preSharedKey.identity: 1 to 128 bytes without NUL, got \(identity.count)")
        }
    }
}
