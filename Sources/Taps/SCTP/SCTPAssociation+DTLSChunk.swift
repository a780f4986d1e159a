/// The DTLS chunk draft's "Abstract API" on an association: what a key management method (and a
/// test) uses to read the negotiation and to install, switch and destroy key material per epoch.
/// Loop thread only.
extension SCTPAssociation {
    /// "Get Agreed DTLS Key Management Method and Role", with both parameters as on the wire.
    var dtlsChunkAgreement: DTLSChunkAgreement? { path.chunkFilter?.agreement }

    /// Runs `body` on the association's protection operator.
    private func withProtection<R>(_ body: (inout DTLSChunkProtection) throws(TransportError) -> R) throws(TransportError) -> R {
        guard let filter = path.chunkFilter else { throw .notSupported("this SCTP association has no DTLS chunk (stack dtls-chunk-sctp)") }
        return try filter.withProtection(body)
    }

    /// "Establish Send Key Material"; primary keys are used from the next packet on.
    func establishSendKeys(_ keys: DTLSChunkKeyMaterial, suite: DTLSChunkCipherSuite, for context: DTLSKeyContextID) throws(TransportError) {
        try withProtection { protection throws(TransportError) in try protection.establishSendKeys(keys, suite: suite, for: context) }
    }

    /// "Establish Receive Key Material".
    func establishReceiveKeys(_ keys: DTLSChunkKeyMaterial, suite: DTLSChunkCipherSuite, for context: DTLSKeyContextID) throws(TransportError) {
        try withProtection { protection throws(TransportError) in try protection.establishReceiveKeys(keys, suite: suite, for: context) }
    }

    /// "Destroy Send Key Material".
    func destroySendKeys(for context: DTLSKeyContextID) throws(TransportError) -> Bool {
        try withProtection { $0.destroySendKeys(for: context) }
    }

    /// "Destroy Receive Key Material".
    func destroyReceiveKeys(for context: DTLSKeyContextID) throws(TransportError) -> Bool {
        try withProtection { $0.destroyReceiveKeys(for: context) }
    }

    /// "Set Key to Use".
    func useSendKeys(_ context: DTLSKeyContextID) throws(TransportError) -> Bool {
        try withProtection { $0.useSendKeys(context) }
    }

    /// "Require Protected SCTP Packets".
    func requireProtectedPackets() throws(TransportError) {
        try withProtection { $0.requireProtectedPackets() }
    }

    /// "Configure Replay Protection", for receive keys installed afterwards.
    func configureReplayWindow(_ size: Int) throws(TransportError) {
        try withProtection { protection throws(TransportError) in try protection.configureReplayWindow(size) }
    }

    /// The agreement, whether protection is required, and the association-wide and per-key-context
    /// counters ("Get AEAD ... Invocations"); nil without the DTLS chunk.
    var dtlsChunkStatus: DTLSChunkStatus? {
        guard let filter = path.chunkFilter else { return nil }
        return DTLSChunkStatus(agreement: filter.agreement, requiresProtection: filter.protection.requiresProtection,
                               counters: filter.protection.counters, epochCounters: filter.protection.epochCounters,
                               sendKeyContext: filter.protection.sendKeyInUse, rekeys: keyManagementProgress?.rekeys ?? 0)
    }
}
