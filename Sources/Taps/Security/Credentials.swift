internal import COpenSSL

/// Certificates and private keys from PEM or DER bytes, through OpenSSL's decoders. The encoding
/// is recognised from the bytes: PEM is text with "-----BEGIN", anything else is tried as DER.
enum Credentials {
    private static func isPEM(_ bytes: [UInt8]) -> Bool {
        let marker = Array("-----BEGIN".utf8)
        return bytes.count >= marker.count && (0...(bytes.count - marker.count)).contains { bytes[$0..<($0 + marker.count)].elementsEqual(marker) }
    }

    /// The certificates in `bytes`, in order (a PEM chain, or one DER certificate). The caller frees them.
    static func certificates(_ bytes: [UInt8], what: String) throws(TransportError) -> [OpaquePointer] {
        var result: [OpaquePointer] = []
        if isPEM(bytes) {
            let bio = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
            defer { BIO_free(bio) }
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { result.append(certificate) }
        } else if let certificate = decodeDER(bytes, { d2i_X509(nil, $0, $1) }) {
            result.append(certificate)
        }
        ERR_clear_error()
        guard !result.isEmpty else { throw .invalidCredentials("\(what): no PEM or DER certificate found") }
        return result
    }

    /// The private key in `bytes` (PEM, or DER in PKCS#8 or the algorithm's own form). The caller frees it.
    static func privateKey(_ bytes: [UInt8]) throws(TransportError) -> OpaquePointer {
        let key: OpaquePointer?
        if isPEM(bytes) {
            let bio = bytes.withUnsafeBytes { BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }
            defer { BIO_free(bio) }
            key = PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        } else {
            key = decodeDER(bytes) { d2i_AutoPrivateKey(nil, $0, $1) }
        }
        guard let key else { throw TLSContext.lastError(.invalidCredentials, "private key: no PEM or DER private key found") }
        ERR_clear_error()
        return key
    }

    private static func decodeDER(_ bytes: [UInt8], _ decode: (UnsafeMutablePointer<UnsafePointer<UInt8>?>, Int) -> OpaquePointer?) -> OpaquePointer? {
        bytes.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return decode(&cursor, buffer.count)
        }
    }

    /// Loads `identity` and hands it to OpenSSL through `certificate`, `chain` and `key` (the setters of
    /// an SSL_CTX or of one SSL), then `check`s that the key matches the certificate.
    static func install(_ identity: SecurityParameters.Identity, certificate: (OpaquePointer) -> Int32,
                        chain: (OpaquePointer) -> Int32, key: (OpaquePointer) -> Int32, check: () -> Int32) throws(TransportError) {
        let certificates = try certificates(identity.certificateChain.load(), what: "certificate chain")
        defer { certificates.forEach { X509_free($0) } }
        guard certificate(certificates[0]) == 1 else { throw TLSContext.lastError(.invalidCredentials, "certificate") }
        for intermediate in certificates.dropFirst() { _ = chain(intermediate) }
        let privateKey = try privateKey(identity.privateKey.load())
        defer { EVP_PKEY_free(privateKey) }
        guard key(privateKey) == 1, check() == 1 else {
            throw TLSContext.lastError(.invalidCredentials, "the private key does not match the certificate")
        }
    }

    /// DER encoding of a certificate.
    static func der(_ certificate: OpaquePointer) -> [UInt8] {
        encodeDER { i2d_X509(certificate, $0) }
    }

    /// A peer's chain in DER, leaf first: `leaf`, then the certificates of `sent` (an OpenSSL
    /// STACK_OF(X509), which may or may not begin with the leaf again).
    static func derChain(leaf: OpaquePointer?, sent: OpaquePointer?) -> [[UInt8]] {
        var chain = leaf.map { [der($0)] } ?? []
        if let sent {
            for index in 0..<OPENSSL_sk_num(sent) {
                guard let certificate = OPENSSL_sk_value(sent, index) else { continue }
                let encoded = der(OpaquePointer(certificate))
                if encoded != chain.first { chain.append(encoded) }
            }
        }
        return chain
    }

    /// Runs one of OpenSSL's i2d functions twice: for the length, then to fill the bytes.
    static func encodeDER(_ encode: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32) -> [UInt8] {
        let length = encode(nil)
        guard length > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        bytes.withUnsafeMutableBufferPointer { buffer in
            var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            _ = encode(&cursor)
        }
        return bytes
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo of the first certificate in `bytes`.
    static func publicKeySHA256(ofCertificate bytes: [UInt8]) throws(TransportError) -> [UInt8] {
        let certificates = try certificates(bytes, what: "certificate")
        defer { certificates.forEach { X509_free($0) } }
        return try publicKeySHA256(certificates[0])
    }

    static func publicKeySHA256(_ certificate: OpaquePointer) throws(TransportError) -> [UInt8] {
        guard let key = X509_get0_pubkey(certificate) else { throw TLSContext.lastError(.invalidCredentials, "certificate public key") }
        let info = encodeDER { i2d_PUBKEY(key, $0) }
        guard !info.isEmpty else { throw TLSContext.lastError(.invalidCredentials, "SubjectPublicKeyInfo") }
        var digest = [UInt8](repeating: 0, count: 32)
        SHA256(info, info.count, &digest)
        return digest
    }
}
