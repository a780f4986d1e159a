/// A key management message of the TLS 1.3 method (draft-porfiri-tsvwg-sctp-dtls-handshake, "TLS
/// Message Transport"): one byte with the T bit and the 7 low bits of the epoch of the key context
/// the message belongs to, then TLS records (T = 0) or a control message (T = 1: its type, then
/// its data).
struct TLSKeyManagementMessage: Equatable, Sendable {
    enum Content: Equatable, Sendable {
        case records([UInt8])
        case control(type: UInt8, data: [UInt8])
    }

    static let controlBit: UInt8 = 0x80
    /// "Protection Established" (draft-porfiri "Control Messages"): the server has installed the
    /// keys and requires protection; no data.
    static let protectionEstablished: UInt8 = 0x01

    var epochBits: UInt8
    var content: Content

    init(epoch: UInt64, content: Content) {
        epochBits = UInt8(epoch & 0x7F)
        self.content = content
    }

    /// Nil for a message without records or without a control type.
    init?(bytes: [UInt8]) {
        guard bytes.count > 1 else { return nil }
        epochBits = bytes[0] & 0x7F
        content = bytes[0] & Self.controlBit == 0 ? .records(Array(bytes[1...])) : .control(type: bytes[1], data: Array(bytes[2...]))
    }

    var bytes: [UInt8] {
        switch content {
        case .records(let records): [epochBits] + records
        case .control(let type, let data): [Self.controlBit | epochBits, type] + data
        }
    }

    /// Whether the records open a TLS connection: a handshake record (type 22) whose first
    /// message is a ClientHello (type 1), after the 5-byte record header (RFC 8446 section 5.1).
    static func startsWithClientHello(_ records: [UInt8]) -> Bool {
        records.count > 5 && records[0] == 22 && records[5] == 1
    }
}

/// The DTLS chunk's key material from a TLS 1.3 key management connection (draft-porfiri "Key
/// Derivation"): one exporter label, and a context of direction (0 client, 1 server), key role (0
/// primary, 1 restart), key type (0 key, 1 sequence-number key, 2 IV), then the SCTP initiator's
/// and the responder's 0x8006 parameters as on the wire: twelve exports.
enum TLSChunkKeyExport {
    static let label = "EXPORTER_TLS_FOR_DTLS_IN_SCTP"

    static func derive(suite: DTLSChunkCipherSuite, initiatorParameter: [UInt8], responderParameter: [UInt8],
                       export: DTLSChunkKeyExport.Exporter) throws(TransportError) -> DTLSChunkKeyExport.Keys {
        func material(server: Bool, restart: Bool) throws(TransportError) -> DTLSChunkKeyMaterial {
            func part(_ type: UInt8, _ length: Int) throws(TransportError) -> [UInt8] {
                let context = [server ? 1 : 0, restart ? 1 : 0, type] + initiatorParameter + responderParameter
                guard let bytes = export(label, context, length), bytes.count == length else {
                    throw .handshakeFailed("the TLS 1.3 key management connection exported no keys (\(label))")
                }
                return bytes
            }
            return DTLSChunkKeyMaterial(key: try part(0, suite.keyLength), iv: try part(2, suite.ivLength),
                                        sequenceNumberKey: try part(1, suite.sequenceNumberKeyLength))
        }
        return DTLSChunkKeyExport.Keys(clientWrite: try material(server: false, restart: false), serverWrite: try material(server: true, restart: false),
                                       restartClientWrite: try material(server: false, restart: true),
                                       restartServerWrite: try material(server: true, restart: true))
    }
}
