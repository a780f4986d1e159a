internal import COpenSSL

/// Servers of TLS/SCTP (RFC 3436 section 5.2): a stream that resumes the session its own
/// association's first stream got needs no ticket of its own, since the client offers that session
/// on each of the association's streams until it expires (`TLSStreamSessions`). Every ticket the
/// server issues carries, encrypted inside it, the scope it was issued in (`TLSEngine.ticketScope`:
/// the association's random tag); a handshake that resumes a ticket of its own scope issues none,
/// which saves the server sealing a ticket and the stream an SCTP message per stream set-up. A
/// resumption from another association, or on a stack without scopes, gets its tickets as before,
/// so a client never reuses a ticket across associations for want of a new one (RFC 8446
/// appendix C.4).
extension TLSContext {
    func scopeTicketsToAssociations() {
        SSL_CTX_set_session_ticket_cb(context, { ssl, _ in
            guard let scope = TLSEngine.from(ssl)?.ticketScope, let session = SSL_get_session(ssl) else { return 1 }
            return scope.withUnsafeBytes { SSL_SESSION_set1_ticket_appdata(session, $0.baseAddress, $0.count) }
        }, { ssl, session, _, _, status, _ in
            // The answers leave OpenSSL's own handling as it is (ssl/t1_lib.c, tls_decrypt_ticket):
            // use what decrypted, renew what did not.
            switch status {
            case SSL_TICKET_SUCCESS, SSL_TICKET_SUCCESS_RENEW:
                if let ssl, let session, let scope = TLSEngine.from(ssl)?.ticketScope,
                   TLSContext.ticketScope(of: session) == scope {
                    SSL_set_num_tickets(ssl, 0)
                }
                return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW
            case SSL_TICKET_EMPTY, SSL_TICKET_NO_DECRYPT:
                return SSL_TICKET_RETURN_IGNORE_RENEW
            default:
                return SSL_TICKET_RETURN_ABORT
            }
        }, nil)
    }

    private static func ticketScope(of session: OpaquePointer) -> [UInt8]? {
        var data: UnsafeMutableRawPointer?
        var length = 0
        guard SSL_SESSION_get0_ticket_appdata(session, &data, &length) == 1, let data, length > 0 else { return nil }
        return Array(UnsafeRawBufferPointer(start: data, count: length))
    }
}
