internal import COpenSSL
import Foundation
import Synchronization

/// CM: a client's TLS session cache (TLS 1.3 tickets, TLS 1.2 session ids or tickets), keyed by the
/// server's name and port, and of the DTLS chunk's DTLS 1.3 key management sessions, keyed by the
/// peer's address. Each Preconnection has one unless `SecurityParameters.sessionCache`
/// shares one across Preconnections. Holds at most `maxSessions` (the least recently stored goes
/// first) and offers a session for at most `lifetimeSeconds` (or the server's ticket lifetime,
/// whichever is shorter).
public final class TLSSessionCache: Sendable, Hashable {
    /// The most sessions held; the oldest is evicted first.
    public let maxSessions: Int
    /// How long a session is offered for resumption.
    public let lifetimeSeconds: Int
    private let entries = Mutex<[String: Entry]>([:])
    private let stores = Atomic<UInt64>(0)

    /// A session as the cache holds it. @unchecked Sendable: OpenSSL counts references atomically
    /// and a cached session is not modified.
    private enum Held: @unchecked Sendable {
        /// An SSL_SESSION reference.
        case openSSL(OpaquePointer)
        /// A session of another TLS library (the DTLS chunk's BoringSSL), serialized, and when it
        /// stops being offered.
        case encoded([UInt8], expiry: ContinuousClock.Instant)

        func release() {
            if case .openSSL(let session) = self { SSL_SESSION_free(session) }
        }
    }

    private struct Entry: Sendable {
        let held: Held
        let order: UInt64
    }

    /// An empty cache with these limits.
    public init(maxSessions: Int = 100, lifetimeSeconds: Int = 7200) {
        self.maxSessions = max(0, maxSessions)
        self.lifetimeSeconds = max(0, lifetimeSeconds)
    }

    deinit {
        entries.withLock { $0.values.forEach { $0.held.release() } }
    }

    /// Sessions held now (expired ones included until they are looked up or evicted).
    public var count: Int { entries.withLock { $0.count } }

    /// Sessions stored since the cache was made: a client's tickets and TLS 1.2 sessions as they came.
    var sessionsStored: UInt64 { stores.load(ordering: .relaxed) }

    /// Drops every session.
    public func removeAll() {
        entries.withLock { cache in
            cache.values.forEach { $0.held.release() }
            cache.removeAll()
        }
    }

    func store(_ session: OpaquePointer, for key: String) {
        guard maxSessions > 0 else { return }
        SSL_SESSION_up_ref(session)
        insert(.openSSL(session), for: key)
    }

    /// Keeps a serialized session for `key`, resumable for `lifetimeSeconds` (the server's) or our
    /// lifetime, whichever is shorter.
    func storeEncoded(_ bytes: [UInt8], lifetimeSeconds: Int, for key: String) {
        guard maxSessions > 0 else { return }
        insert(.encoded(bytes, expiry: ContinuousClock.now + .seconds(min(lifetimeSeconds, self.lifetimeSeconds))), for: key)
    }

    /// Replaces what `key` held and evicts the least recently stored beyond `maxSessions`.
    private func insert(_ held: Held, for key: String) {
        let order = stores.add(1, ordering: .relaxed).newValue
        entries.withLock { cache in
            cache.updateValue(Entry(held: held, order: order), forKey: key)?.held.release()
            while cache.count > maxSessions, let oldest = cache.min(by: { $0.value.order < $1.value.order }) {
                oldest.value.held.release()
                cache[oldest.key] = nil
            }
        }
    }

    /// A resumable session for `key`, retained for the caller (who frees it after SSL_set_session).
    func session(for key: String) -> OpaquePointer? {
        entries.withLock { cache -> OpaquePointer? in
            guard let entry = cache[key], case .openSSL(let session) = entry.held else { return nil }
            guard isUsable(session) else {
                SSL_SESSION_free(session)
                cache[key] = nil
                return nil
            }
            SSL_SESSION_up_ref(session)
            return session
        }
    }

    /// The serialized session for `key` while it is resumable.
    func encodedSession(for key: String) -> [UInt8]? {
        entries.withLock { cache in
            guard let entry = cache[key], case .encoded(let bytes, let expiry) = entry.held else { return nil }
            guard ContinuousClock.now < expiry else {
                cache[key] = nil
                return nil
            }
            return bytes
        }
    }

    /// Resumable and within both the server's lifetime and ours.
    func isUsable(_ session: OpaquePointer) -> Bool {
        guard SSL_SESSION_is_resumable(session) == 1 else { return false }
        let age = time(nil) - Int(SSL_SESSION_get_time(session))
        return age < min(Int(SSL_SESSION_get_timeout(session)), lifetimeSeconds)
    }

    public static func == (lhs: TLSSessionCache, rhs: TLSSessionCache) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Sessions as bytes

    /// The ASN.1 (DER) form of a session, which OpenSSL reads back with `decode`.
    static func encode(_ session: OpaquePointer) -> [UInt8] {
        Credentials.encodeDER { i2d_SSL_SESSION(session, $0) }
    }

    static func decode(_ bytes: [UInt8]) throws(TransportError) -> OpaquePointer {
        let session = bytes.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_SSL_SESSION(nil, &cursor, buffer.count)
        }
        guard let session else { throw TLSContext.lastError(.invalidArgument, "resumptionSession: not a TLS session exported by exportSession()") }
        return session
    }
}
