internal import COpenSSL
import Glibc

/// The client's TLS sessions for the streams of one tls-sctp association (RFC 3436 section 5): which
/// session a stream's handshake offers, and whether it must wait for one first. Shared by the TLS
/// layers of the association's streams. Loop thread only.
final class TLSStreamSessions {
    let pattern: SCTPOptions.TLSHandshakes
    /// The session a new stream offers: one from an earlier association (the cache, or an imported
    /// one, section 5.4) until the streams get newer ones. A copy of its own: OpenSSL marks a client
    /// session not resumable once the connection that used it gets a replacement ticket, and each
    /// stream offers a copy of this one for the same reason.
    private var offered: OpaquePointer?
    /// A stream is doing the full handshake the others wait for.
    private var leading = false
    /// Streams waiting for a session (resumeFirst, delayed).
    private var waiting: [(OpaquePointer?) -> Void] = []

    /// - Parameter earlier: a retained session, released here.
    init(pattern: SCTPOptions.TLSHandshakes, earlier: OpaquePointer?) {
        self.pattern = pattern
        offered = earlier.flatMap(SSL_SESSION_dup)
        if let earlier { SSL_SESSION_free(earlier) }
    }

    deinit {
        if let offered { SSL_SESSION_free(offered) }
    }

    /// Calls `start` with the session a new stream's handshake offers (nil: a full handshake), at
    /// once or, for a stream that waits on the first one's session, when that session arrives.
    /// `isLeader` is true for the stream whose full handshake the others wait for.
    func handshakeMayStart(_ start: @escaping (_ session: OpaquePointer?, _ isLeader: Bool) -> Void) {
        if let offered, !Self.isStale(offered) { return start(offered, false) }
        if pattern == .parallel { return start(nil, false) }
        guard leading else {
            leading = true
            return start(nil, true)
        }
        waiting.append { start($0, false) }
    }

    /// A stream of the association got a resumable session from the server (a TLS 1.3 ticket after
    /// its handshake, or a TLS 1.2 session at its end); it becomes what new streams offer, and the
    /// waiting streams resume it. Under `parallel` only sessions that descend from an earlier
    /// association's are kept: this association's full handshakes are not resumed (section 5.1).
    func sessionArrived(_ session: OpaquePointer, onResumedStream: Bool) {
        guard pattern != .parallel || onResumedStream else { return }
        // The copy held stays resumable until it expires, so a newer one is copied only then (a
        // copy per ticket, two tickets per stream, showed in the stream set-up profile).
        if offered.map(Self.isStale) ?? true, let copy = SSL_SESSION_dup(session) {
            if let offered { SSL_SESSION_free(offered) }
            offered = copy
        }
        leading = false
        release(with: offered)
    }

    /// Not resumable, or within a tenth of its lifetime of expiring (OpenSSL would soon not offer it).
    private static func isStale(_ session: OpaquePointer) -> Bool {
        let lifetime = SSL_SESSION_get_timeout(session)
        return SSL_SESSION_is_resumable(session) != 1 || Int(time(nil)) >= SSL_SESSION_get_time(session) + lifetime - lifetime / 10
    }

    /// The leading stream ended, or finished without a session in time: the waiting streams do
    /// full handshakes rather than wait forever, and the next new stream leads again.
    func leaderEnded() {
        guard leading else { return }
        leading = false
        release(with: nil)
    }

    private func release(with session: OpaquePointer?) {
        let streams = waiting
        waiting.removeAll()
        streams.forEach { $0(session) }
    }
}
