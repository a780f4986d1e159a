/// A key management role, as the 0x8006 negotiation or a rekey assigns it to one connection.
enum KeyManagementRole: Equatable { case client, server }

/// Where one key management connection's handshake stands.
enum KeyManagementHandshakeState: Equatable {
    case handshaking
    case established
    /// The peer's close_notify arrived, or this end closed it.
    case closed
    case failed(TransportError)
}

/// One key management connection of a handshake method, DTLS 1.3 (draft-westerlund) or TLS 1.3
/// (draft-porfiri): its index, which is also the chunk epoch of the keys it exports (3, 4, ...),
/// its role in this connection, its handshake, and the chunk keys it exported. It sends what its
/// engine writes as key management messages in its method's framing. Loop thread only.
protocol KeyManagementConnection: AnyObject {
    var index: UInt64 { get }
    var role: KeyManagementRole { get }
    var state: KeyManagementHandshakeState { get }
    /// The chunk keys exported once the handshake finished.
    var keys: DTLSChunkKeyExport.Keys? { get }
    var suite: DTLSChunkCipherSuite? { get }
    /// Whether the handshake resumed a session (CM).
    var resumed: Bool { get }
    /// The peer's certificate (DER), and its chain as sent.
    var peerCertificateDER: [UInt8]? { get }
    var peerCertificateChainDER: [[UInt8]] { get }
    /// Why the peer's chain failed validation, when the decision was left to a trust verifier.
    var peerValidationError: String? { get }

    func start()
    /// The records of one key management message for this connection.
    func receive(_ records: [UInt8])
    /// Sends close_notify; the connection is done with.
    func close()
    /// Stops the timer of a connection given up without a close_notify.
    func stopTimer()
    /// Exports the chunk's keys, bound to both 0x8006 parameters (`agreement`; `initiated`: this end
    /// sent the INIT), with the negotiated suite.
    func exportKeys(agreement: DTLSChunkAgreement, initiated: Bool) throws(TransportError) -> DTLSChunkCipherSuite
    /// SSKE from this connection's exporter; nil when the engine refused.
    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) -> [UInt8]?
    /// Sessions the peer gave since the last call, as bytes (client side; CM).
    func takeNewSessions() -> [(bytes: [UInt8], lifetimeSeconds: Int)]
}

extension KeyManagementConnection {
    /// This end's write keys and the peer's, primary then restart.
    var ownWrite: (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial)? {
        keys.map { role == .client ? ($0.clientWrite, $0.restartClientWrite) : ($0.serverWrite, $0.restartServerWrite) }
    }

    var peerWrite: (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial)? {
        keys.map { role == .client ? ($0.serverWrite, $0.restartServerWrite) : ($0.clientWrite, $0.restartClientWrite) }
    }

    var primaryContext: DTLSKeyContextID { DTLSKeyContextID(epoch: index) }
    var restartContext: DTLSKeyContextID { DTLSKeyContextID(restart: true, epoch: index) }
}
