internal import COpenSSL

/// Who a certificate names: its subject and its subjectAltName extension, both DER encoded. Two
/// certificates with the same identity may differ in key, serial and validity, as a renewed one
/// does; anything else is another identity.
struct CertificateIdentity: Equatable {
    let subject: [UInt8]
    let subjectAltNames: [UInt8]
    /// The subject as one line of text (`/CN=...`), as `SecurityDetails.peerCertificateSubject` gives it.
    let subjectLine: String

    /// Nil when the bytes are not a DER certificate.
    init?(certificateDER der: [UInt8]) {
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_X509(nil, &cursor, buffer.count)
        }
        guard let certificate = parsed else { return nil }
        defer { X509_free(certificate) }
        guard let subject = Self.encode({ i2d_X509_NAME(X509_get_subject_name(certificate), &$0) }) else { return nil }
        self.subject = subject
        if let line = X509_NAME_oneline(X509_get_subject_name(certificate), nil, 0) {
            subjectLine = String(cString: line)
            CRYPTO_free(line, #fileID, #line)
        } else {
            subjectLine = ""
        }
        let index = X509_get_ext_by_NID(certificate, NID_subject_alt_name, -1)
        if index >= 0, let extensionData = X509_EXTENSION_get_data(X509_get_ext(certificate, index)) {
            subjectAltNames = Array(UnsafeBufferPointer(start: ASN1_STRING_get0_data(extensionData), count: Int(ASN1_STRING_length(extensionData))))
        } else {
            subjectAltNames = []
        }
    }

    private static func encode(_ body: (inout UnsafeMutablePointer<UInt8>?) -> Int32) -> [UInt8]? {
        var buffer: UnsafeMutablePointer<UInt8>?
        let length = body(&buffer)
        guard length > 0, let buffer else { return nil }
        defer { CRYPTO_free(buffer, #fileID, #line) }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(length)))
    }
}
