internal import COpenSSL
internal import CTapsShims

extension SecurityParameters.Identity {
    /// A fresh P-256 key and a self-signed certificate for it, valid for a day, with the given
    /// names as subject alternative names ("localhost", "127.0.0.1", "::1" by default). For
    /// development, tests and demos; a client trusts it by adding `certificatePEM` to its roots.
    public static func selfSigned(commonName: String = "swift-taps development",
                                  names: [String] = ["localhost", "127.0.0.1", "::1"]) throws(TransportError) -> (identity: Self, certificatePEM: [UInt8]) {
        guard let key = taps_EVP_EC_gen("P-256") else { throw TLSContext.lastError(.invalidCredentials, "P-256 key generation") }
        defer { EVP_PKEY_free(key) }
        guard let certificate = X509_new() else { throw TLSContext.lastError(.invalidCredentials, "X509_new") }
        defer { X509_free(certificate) }
        X509_set_version(certificate, 2)
        var serial = [UInt8](repeating: 0, count: 16)
        RAND_bytes(&serial, Int32(serial.count))
        serial[0] &= 0x7f
        let serialNumber = BN_bin2bn(serial, Int32(serial.count), nil)
        BN_to_ASN1_INTEGER(serialNumber, X509_get_serialNumber(certificate))
        BN_free(serialNumber)
        X509_gmtime_adj(X509_getm_notBefore(certificate), -3600)
        X509_gmtime_adj(X509_getm_notAfter(certificate), 86_400)
        X509_set_pubkey(certificate, key)
        let name = X509_get_subject_name(certificate)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0)
        X509_set_issuer_name(certificate, name)
        let alternatives = names.map { SocketAddress(ip: $0, port: 0) == nil ? "DNS:\($0)" : "IP:\($0)" }.joined(separator: ",")
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, certificate, certificate, nil, nil, 0)
        for (nid, value) in [(NID_subject_alt_name, alternatives), (NID_basic_constraints, "critical,CA:TRUE")] {
            guard let extensionValue = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw TLSContext.lastError(.invalidArgument, "certificate extension \(value)")
            }
            X509_add_ext(certificate, extensionValue, -1)
            X509_EXTENSION_free(extensionValue)
        }
        guard X509_sign(certificate, key, EVP_sha256()) > 0 else { throw TLSContext.lastError(.invalidCredentials, "X509_sign") }
        let certificatePEM = try pem { PEM_write_bio_X509($0, certificate) }
        let keyPEM = try pem { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
        return (Self(certificateChain: .bytes(certificatePEM), privateKey: .bytes(keyPEM)), certificatePEM)
    }

    private static func pem(_ write: (OpaquePointer) -> Int32) throws(TransportError) -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw TLSContext.lastError(.invalidCredentials, "BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw TLSContext.lastError(.invalidCredentials, "PEM encoding") }
        var bytes = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        let count = BIO_read(bio, &bytes, Int32(bytes.count))
        return Array(bytes.prefix(Int(max(count, 0))))
    }
}
