/// A DTLS key management message of the DTLS 1.3 method (draft-westerlund-tsvwg-sctp-dtls-handshake,
/// "DTLS Key-Management Messages"): an SCTP user message on PPID 4242 whose first byte carries the
/// DTLS Connection Index (DCI, the low two bits of a counter that starts at 3 and follows the chunk's
/// epoch; the six bits above are reserved), then one or more DTLS records.
struct DTLSKeyManagementMessage: Equatable, Sendable {
    /// The DCI counter's first value.
    static let firstConnectionIndex: UInt64 = 3

    /// The low two bits of the DTLS connection index.
    var connectionIndexBits: UInt8
    var records: [UInt8]

    init(connectionIndex: UInt64, records: [UInt8]) {
        connectionIndexBits = UInt8(connectionIndex & 3)
        self.records = records
    }

    var bytes: [UInt8] { [connectionIndexBits] + records }

    /// Nil for a message without records. The reserved bits are ignored, as the draft requires.
    init?(bytes: [UInt8]) {
        guard bytes.count > 1 else { return nil }
        connectionIndexBits = bytes[0] & 3
        records = Array(bytes[1...])
    }

    /// The PVALID message (the draft's "Protection Valid"): two bytes, "OK", sent protected on stream
    /// 0 by the responder once DTLS-chunk-protected key management messages have arrived.
    static let protectionValid: [UInt8] = [0x4F, 0x4B]
}

/// The DTLS chunk's key material from a key management DTLS (or TLS) connection's exporter
/// (draft-westerlund, "DTLS Key Context Derivation"): per direction of each context, key and IV
/// under the draft's EXPORTER_DTLS_IN_SCTP_{PRIMARY,RESTART}_{CLIENT,SERVER}_{KEY,IV} labels, and the
/// sequence-number key, which the chunk draft needs and the DTLS method predates, under the same
/// pattern with _SN_KEY (our label). The context is the downgrade prevention data: both 0x8006
/// parameters as on the wire, the client role's first, so a changed parameter gives other keys.
/// Client and server are the key management connection's roles.
enum DTLSChunkKeyExport {
    typealias Exporter = (_ label: String, _ context: [UInt8], _ length: Int) -> [UInt8]?

    struct Keys: Equatable {
        var clientWrite: DTLSChunkKeyMaterial
        var serverWrite: DTLSChunkKeyMaterial
        var restartClientWrite: DTLSChunkKeyMaterial
        var restartServerWrite: DTLSChunkKeyMaterial
    }

    /// Every label the chunk's keys are exported under begins so; no application export may.
    static let labelPrefix = "EXPORTER_DTLS_IN_SCTP_"

    static func label(restart: Bool, client: Bool, part: String) -> String {
        "\(labelPrefix)\(restart ? "RESTART" : "PRIMARY")_\(client ? "CLIENT" : "SERVER")_\(part)"
    }

    static func derive(suite: DTLSChunkCipherSuite, downgradePreventionData context: [UInt8], export: Exporter) throws(TransportError) -> Keys {
        func material(restart: Bool, client: Bool) throws(TransportError) -> DTLSChunkKeyMaterial {
            func part(_ name: String, _ length: Int) throws(TransportError) -> [UInt8] {
                guard let bytes = export(label(restart: restart, client: client, part: name), context, length), bytes.count == length else {
                    throw .handshakeFailed("the key management connection exported no \(label(restart: restart, client: client, part: name))")
                }
                return bytes
            }
            return DTLSChunkKeyMaterial(key: try part("KEY", suite.keyLength), iv: try part("IV", suite.ivLength),
                                        sequenceNumberKey: try part("SN_KEY", suite.sequenceNumberKeyLength))
        }
        return Keys(clientWrite: try material(restart: false, client: true), serverWrite: try material(restart: false, client: false),
                    restartClientWrite: try material(restart: true, client: true), restartServerWrite: try material(restart: true, client: false))
    }
}

extension DTLSKeyManagementMessage {
    /// Whether the message opens a DTLS connection: its first record a plaintext handshake record
    /// of epoch 0 (RFC 9147 section 4) holding a ClientHello (type 1).
    var startsWithClientHello: Bool {
        // type (1), version (2), epoch (2), sequence number (6), length (2), then msg_type.
        records.count > 13 && records[0] == 22 && records[3] == 0 && records[4] == 0 && records[13] == 1
    }
}
