internal import COpenSSL
import Synchronization

/// KMId 0 starts every association at sequence number 0 under the keys the application gave, so a
/// second association sending under the same key and IV repeats AEAD nonces; with AES-GCM that
/// gives away the XOR of the two plaintexts and the authentication key. The ledger remembers, for
/// the life of the process, a digest of every key and IV that pre-shared parameters sent under,
/// and refuses them a second association. It cannot see other processes: a key file used again
/// after the process restarts repeats nonces all the same (Docs/Security.md).
final class PreSharedKeyLedger: Sendable {
    static let shared = PreSharedKeyLedger()

    /// SHA-256 of each key and IV, never the keys themselves.
    private let used = Mutex<Set<[UInt8]>>([])

    /// Records that `material` protects an association's packets from now on; false when it already
    /// protected another one in this process.
    func claim(_ material: DTLSChunkKeyMaterial) -> Bool {
        let bytes = material.key + material.iv
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        SHA256(bytes, bytes.count, &digest)
        return used.withLock { $0.insert(digest).inserted }
    }
}
