import Foundation
import Synchronization

/// Where the secrets of TLS and DTLS connections go, so that Wireshark or tshark can decrypt a
/// capture: one line per secret in the NSS key log format (`CLIENT_RANDOM`, or the TLS 1.3 labels
/// such as `CLIENT_TRAFFIC_SECRET_0`, then the client random and the secret in hex), both roles,
/// tls-tcp, tls-sctp, dtls-udp and the DTLS 1.3 key management of dtls-chunk-sctp. The DTLS chunk's
/// own keys get lines of their own (`DTLSChunkKeyLog`). Anyone holding the file can read the
/// traffic: log keys only where that is intended.
public struct KeyLog: Sendable, Hashable {
    private let token = CallbackToken()
    let write: @Sendable (String) -> Void

    /// Hands every line (without its newline) to `body`, from the connection's loop thread.
    public init(_ body: @escaping @Sendable (String) -> Void) {
        write = body
    }

    /// Appends every line to the file at `path` (created when missing), as `SSLKEYLOGFILE` does.
    public static func file(_ path: String) -> KeyLog {
        let writer = KeyLogFile.shared(path)
        return KeyLog { line in writer.append(line) }
    }

    /// The file `SSLKEYLOGFILE` names, when it is set and not empty: parameters without a key log
    /// of their own use it, so that an application can be made to log keys without changing it.
    public static var environment: KeyLog? {
        guard let path = ProcessInfo.processInfo.environment["SSLKEYLOGFILE"], !path.isEmpty else { return nil }
        return .file(path)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.token === rhs.token }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(token)) }
}

/// One open file per path for the whole process: lines from every connection and loop go through
/// one lock, each written whole.
final class KeyLogFile: Sendable {
    private let descriptor: Int32

    private static let open = Mutex<[String: KeyLogFile]>([:])

    static func shared(_ path: String) -> KeyLogFile {
        open.withLock { files in
            if let file = files[path] { return file }
            let file = KeyLogFile(path: path)
            files[path] = file
            return file
        }
    }

    private init(path: String) {
        descriptor = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// One `write` per line with O_APPEND: lines from several threads or processes never interleave.
    func append(_ line: String) {
        guard descriptor >= 0 else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }
}
