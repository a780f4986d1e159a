/// One end's restart key context of a protected association, as bytes an application keeps so that
/// a process that dies can restart the association (draft-ietf-tsvwg-sctp-dtls-chunk, "SCTP Restart
/// Considerations": "store securely and persistently the restart keys, and related DTLS epoch").
/// It holds the method and key management role it came from, the suite, the restart context's
/// epoch, the port this end's association used (a restart comes from the same one), this end's
/// restart write keys and the peer's, and the peer's certificate, which the first handshake after
/// the restart must show again.
///
/// Wire layout after the marker, big-endian: method (1), role (1: 0 client, 1 server), suite (2),
/// epoch (8), local port (2), send and then receive key material (each: key, IV and
/// sequence-number key, each as a one-byte length and the bytes), peer certificate DER (4-byte
/// length and the bytes).
struct DTLSChunkRestartContext: Equatable, Sendable {
    /// Marks the bytes, so that a session or other blob given in their place is refused by name.
    static let marker = Array("taps-dtls-chunk-restart/1\n".utf8)

    var method: DTLSKeyManagementMethod
    var role: DTLSChunkAgreement.Role
    var suite: DTLSChunkCipherSuite
    var epoch: UInt64
    /// The UDP port (and so the SCTP port) of this end's association.
    var localPort: UInt16
    /// What this end sends under, and what it reads the peer's packets with.
    var send: DTLSChunkKeyMaterial
    var receive: DTLSChunkKeyMaterial
    var peerCertificateDER: [UInt8]

    var contextID: DTLSKeyContextID { DTLSKeyContextID(restart: true, epoch: epoch) }

    var bytes: [UInt8] {
        var out = Self.marker
        out.append(method.rawValue)
        out.append(role == .client ? 0 : 1)
        out += [UInt8(suite.rawValue >> 8), UInt8(suite.rawValue & 0xFF)]
        out += (0..<8).map { UInt8(truncatingIfNeeded: epoch >> (56 - 8 * $0)) }
        out += [UInt8(localPort >> 8), UInt8(localPort & 0xFF)]
        for material in [send, receive] {
            for part in [material.key, material.iv, material.sequenceNumberKey] {
                out.append(UInt8(part.count))
                out += part
            }
        }
        let length = UInt32(peerCertificateDER.count)
        out += (0..<4).map { UInt8(truncatingIfNeeded: length >> (24 - 8 * $0)) }
        return out + peerCertificateDER
    }

    init(method: DTLSKeyManagementMethod, role: DTLSChunkAgreement.Role, suite: DTLSChunkCipherSuite, epoch: UInt64, localPort: UInt16,
         send: DTLSChunkKeyMaterial, receive: DTLSChunkKeyMaterial, peerCertificateDER: [UInt8]) {
        self.method = method
        self.role = role
        self.suite = suite
        self.epoch = epoch
        self.localPort = localPort
        self.send = send
        self.receive = receive
        self.peerCertificateDER = peerCertificateDER
    }

    /// Reads bytes `Connection.exportRestartContext()` gave; anything else is `invalidArgument`.
    init(bytes: [UInt8]) throws(TransportError) {
        var reader = ByteReader(bytes: bytes)
        func fail(_ what: String) -> TransportError {
            .invalidArgument("dtlsChunkRestartContext: \(what); give the bytes Connection.exportRestartContext() returned")
        }
        guard reader.take(Self.marker.count) == Self.marker else { throw fail("not a DTLS chunk restart context") }
        guard let method = reader.byte(), let role = reader.byte(), role <= 1, let suiteBytes = reader.take(2), let epochBytes = reader.take(8),
              let portBytes = reader.take(2) else { throw fail("truncated") }
        guard let suite = DTLSChunkCipherSuite(rawValue: UInt16(suiteBytes[0]) << 8 | UInt16(suiteBytes[1])) else {
            throw fail("an unknown cipher suite")
        }
        var materials: [DTLSChunkKeyMaterial] = []
        for _ in 0..<2 {
            var parts: [[UInt8]] = []
            for _ in 0..<3 {
                guard let length = reader.byte(), let part = reader.take(Int(length)) else { throw fail("truncated") }
                parts.append(part)
            }
            let material = DTLSChunkKeyMaterial(key: parts[0], iv: parts[1], sequenceNumberKey: parts[2])
            do throws(TransportError) { try material.validate(for: suite) } catch { throw fail("\(error)") }
            materials.append(material)
        }
        guard let lengthBytes = reader.take(4) else { throw fail("truncated") }
        let certificateLength = lengthBytes.reduce(0) { $0 << 8 | Int($1) }
        guard let certificate = reader.take(certificateLength), reader.isAtEnd else { throw fail("truncated or with bytes after its end") }
        self.init(method: DTLSKeyManagementMethod(rawValue: method), role: role == 0 ? .client : .server, suite: suite,
                  epoch: epochBytes.reduce(0) { $0 << 8 | UInt64($1) }, localPort: UInt16(portBytes[0]) << 8 | UInt16(portBytes[1]),
                  send: materials[0], receive: materials[1],
                  peerCertificateDER: certificate)
        guard self.epoch >= DTLSChunkProtection.firstEpoch else { throw fail("an epoch below 3") }
    }

    /// Reads a byte array front to back.
    private struct ByteReader {
        let bytes: [UInt8]
        var offset = 0
        var isAtEnd: Bool { offset == bytes.count }
        mutating func byte() -> UInt8? { take(1)?.first }
        mutating func take(_ count: Int) -> [UInt8]? {
            guard count >= 0, bytes.count - offset >= count else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }
    }
}
