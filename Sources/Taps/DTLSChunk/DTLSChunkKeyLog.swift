/// The DTLS chunk's keys as key log lines, so that a capture of dtls-chunk-sctp can be decrypted:
/// Wireshark's NSS format has no line for them, so they get one of their own, written to the same
/// `KeyLog` as the TLS secrets. One line per direction of each installed key context:
///
///     SCTP_DTLS_CHUNK_KEY <initiator tag> <responder tag> <primary|restart> <epoch> <from> <suite> <key> <iv> <sn_key>
///
/// The tags are the two SCTP verification tags in hex (8 digits, as in the common header of the
/// packets each end receives), `from` is `initiator` or `responder` (the end that protects with the
/// key), `suite` the IANA name, and key, IV and sequence-number key are hex.
enum DTLSChunkKeyLog {
    static let label = "SCTP_DTLS_CHUNK_KEY"

    static func line(initiatorTag: UInt32, responderTag: UInt32, context: DTLSKeyContextID, fromInitiator: Bool,
                     suite: DTLSChunkCipherSuite, keys: DTLSChunkKeyMaterial) -> String {
        [label, tag(initiatorTag), tag(responderTag), context.restart ? "restart" : "primary", "\(context.epoch)",
         fromInitiator ? "initiator" : "responder", suite.description,
         Hex.encode(keys.key), Hex.encode(keys.iv), Hex.encode(keys.sequenceNumberKey)].joined(separator: " ")
    }

    private static func tag(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
