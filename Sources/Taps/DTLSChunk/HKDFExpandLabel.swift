internal import COpenSSL
import Glibc

/// HKDF-Expand-Label (RFC 8446 section 7.1) on OpenSSL's HKDF in expand-only mode. TLS 1.3 labels
/// start with "tls13 ", DTLS 1.3 ones with "dtls13" (RFC 9147 section 5.9).
struct HKDFExpandLabel {
    let digest: String
    let prefix: String

    func expand(secret: [UInt8], label: String, context: [UInt8] = [], length: Int) throws(TransportError) -> [UInt8] {
        let fullLabel = Array((prefix + label).utf8)
        guard fullLabel.count <= 255, context.count <= 255, length <= 0xFFFF else {
            throw .invalidArgument("HKDF-Expand-Label: label, context or length out of range")
        }
        // struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } HkdfLabel;
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)]
        info += fullLabel
        info.append(UInt8(context.count))
        info += context
        return try Self.expand(digest: digest, secret: secret, info: info, length: length)
    }

    // OSSL_PARAM keeps the pointer to its key name, so the names live in C strings of their own
    // (a Swift String passed to a C call lives only for that call).
    nonisolated(unsafe) private static let modeName = strdup(OSSL_KDF_PARAM_MODE)!
    nonisolated(unsafe) private static let digestName = strdup(OSSL_KDF_PARAM_DIGEST)!
    nonisolated(unsafe) private static let keyName = strdup(OSSL_KDF_PARAM_KEY)!
    nonisolated(unsafe) private static let infoName = strdup(OSSL_KDF_PARAM_INFO)!

    /// HKDF-Expand (RFC 5869 section 2.3).
    static func expand(digest: String, secret: [UInt8], info: [UInt8], length: Int) throws(TransportError) -> [UInt8] {
        guard let kdf = EVP_KDF_fetch(nil, "HKDF", nil) else { throw .notSupported("OpenSSL has no HKDF") }
        defer { EVP_KDF_free(kdf) }
        guard let context = EVP_KDF_CTX_new(kdf) else { throw .io("EVP_KDF_CTX_new failed") }
        defer { EVP_KDF_CTX_free(context) }
        var output = [UInt8](repeating: 0, count: length)
        var mode = Int32(EVP_KDF_HKDF_MODE_EXPAND_ONLY)
        var secret = secret
        var info = info
        let status = digest.withCString { digestName in
            secret.withUnsafeMutableBytes { secretBytes in
                info.withUnsafeMutableBytes { infoBytes in
                    var params = [
                        OSSL_PARAM_construct_int(modeName, &mode),
                        OSSL_PARAM_construct_utf8_string(Self.digestName, UnsafeMutablePointer(mutating: digestName), 0),
                        OSSL_PARAM_construct_octet_string(keyName, secretBytes.baseAddress, secretBytes.count),
                        OSSL_PARAM_construct_octet_string(infoName, infoBytes.baseAddress, infoBytes.count),
                        OSSL_PARAM_construct_end(),
                    ]
                    return output.withUnsafeMutableBufferPointer { out in
                        EVP_KDF_derive(context, out.baseAddress, out.count, &params)
                    }
                }
            }
        }
        guard status == 1 else { throw .invalidArgument("HKDF-Expand with \(digest) failed") }
        return output
    }
}
