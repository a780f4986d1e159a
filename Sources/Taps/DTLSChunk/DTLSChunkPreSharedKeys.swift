import Foundation

/// KMId 0, "DTLS Chunk with Pre-shared cryptographic parameters": the application supplies the
/// cipher suite and, per direction, record key, IV and sequence-number key of the primary DTLS key
/// context (and optionally of the restart context). Client and server are the key management roles
/// that the 0x8006 negotiation gives, not who initiated the association.
///
/// Each association needs keys of its own: every association starts at sequence number 0 under
/// them, so two associations under the same keys would repeat AEAD nonces. A process therefore
/// refuses keys that already protected an association in it (`initiate()` fails, a listener aborts
/// the association) unless `allowsReuseAcrossAssociations` says otherwise.
public struct DTLSChunkPreSharedKeys: Sendable, Hashable {
    /// The AEAD suite the keys are for.
    public var cipherSuite: DTLSChunkCipherSuite
    /// The primary context's keys for packets from the key management client to the server.
    public var clientToServer: DTLSChunkKeyMaterial
    /// The primary context's keys for packets from the server to the client.
    public var serverToClient: DTLSChunkKeyMaterial
    /// The restart context's keys; nil: no restart context.
    public var restart: Restart?
    /// Lets these keys protect more than one association in this process. Every association starts
    /// at sequence number 0, so the associations repeat AEAD nonces and an observer of two of them
    /// can read and forge their packets: only for measurements and tests whose traffic needs no
    /// protection. Not part of the key file.
    public var allowsReuseAcrossAssociations = false

    /// The restart DTLS key context (draft "SCTP Restart Considerations").
    public struct Restart: Sendable, Hashable {
        /// Keys for packets from the key management client to the server.
        public var clientToServer: DTLSChunkKeyMaterial
        /// Keys for packets from the server to the client.
        public var serverToClient: DTLSChunkKeyMaterial
        /// A restart context of the two directions' keys.
        public init(clientToServer: DTLSChunkKeyMaterial, serverToClient: DTLSChunkKeyMaterial) {
            self.clientToServer = clientToServer
            self.serverToClient = serverToClient
        }
    }

    /// Pre-shared parameters of the given suite and keys.
    public init(cipherSuite: DTLSChunkCipherSuite = .aes128GCMSHA256, clientToServer: DTLSChunkKeyMaterial,
                serverToClient: DTLSChunkKeyMaterial, restart: Restart? = nil) {
        self.cipherSuite = cipherSuite
        self.clientToServer = clientToServer
        self.serverToClient = serverToClient
        self.restart = restart
    }

    /// Checks every key's length against the suite, and that no two directions share a key.
    public func validate() throws(TransportError) {
        var all = [clientToServer, serverToClient]
        if let restart { all += [restart.clientToServer, restart.serverToClient] }
        for material in all { try material.validate(for: cipherSuite) }
        guard Set(all.map(\.key)).count == all.count else {
            throw .invalidArgument("each direction and context of the DTLS chunk needs a key of its own: reusing one repeats nonces")
        }
    }

    /// Fresh random keys for every direction and context, e.g. for a key file both ends read.
    public static func random(cipherSuite: DTLSChunkCipherSuite = .aes128GCMSHA256, restart: Bool = true) -> DTLSChunkPreSharedKeys {
        func material() -> DTLSChunkKeyMaterial {
            var generator = SystemRandomNumberGenerator()
            func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) } }
            return DTLSChunkKeyMaterial(key: bytes(cipherSuite.keyLength), iv: bytes(cipherSuite.ivLength),
                                        sequenceNumberKey: bytes(cipherSuite.sequenceNumberKeyLength))
        }
        return DTLSChunkPreSharedKeys(cipherSuite: cipherSuite, clientToServer: material(), serverToClient: material(),
                                      restart: restart ? Restart(clientToServer: material(), serverToClient: material()) : nil)
    }

    // MARK: The key file

    /// Reads a key file: JSON with hex strings, shaped after the draft's socket API (key, IV and
    /// sequence-number key per direction):
    /// `{"cipher_suite": "TLS_AES_128_GCM_SHA256", "client_to_server": {"key": "..", "iv": "..",
    /// "sn_key": ".."}, "server_to_client": {...}, "restart": {"client_to_server": {...},
    /// "server_to_client": {...}}}`, `restart` optional.
    public init(jsonFile path: String) throws(TransportError) {
        guard let data = FileManager.default.contents(atPath: path) else { throw .invalidArgument("cannot read the DTLS chunk key file \(path)") }
        try self.init(json: data)
    }

    /// Parses key file text in the format of `init(jsonFile:)`; malformed text or wrong key lengths throw `invalidArgument`.
    public init(json data: Data) throws(TransportError) {
        let file: KeyFile
        do { file = try JSONDecoder().decode(KeyFile.self, from: data) } catch {
            throw .invalidArgument("DTLS chunk key file: \(error)")
        }
        guard let suite = DTLSChunkCipherSuite(name: file.cipher_suite) else {
            throw .invalidArgument("DTLS chunk key file: unknown cipher suite \(file.cipher_suite); known: \(DTLSChunkCipherSuite.allCases.map(\.description).joined(separator: ", "))")
        }
        self.init(cipherSuite: suite, clientToServer: try file.client_to_server.material("client_to_server"),
                  serverToClient: try file.server_to_client.material("server_to_client"),
                  restart: try file.restart.map { restart throws(TransportError) in
                      Restart(clientToServer: try restart.client_to_server.material("restart.client_to_server"),
                              serverToClient: try restart.server_to_client.material("restart.server_to_client"))
                  })
        try validate()
    }

    /// The key file text for these keys (the format `init(json:)` reads).
    public var json: String {
        func direction(_ material: DTLSChunkKeyMaterial) -> String {
            "{\"key\": \"\(Hex.encode(material.key))\", \"iv\": \"\(Hex.encode(material.iv))\", \"sn_key\": \"\(Hex.encode(material.sequenceNumberKey))\"}"
        }
        var text = "{\n  \"cipher_suite\": \"\(cipherSuite)\",\n"
        text += "  \"client_to_server\": \(direction(clientToServer)),\n"
        text += "  \"server_to_client\": \(direction(serverToClient))"
        if let restart {
            text += ",\n  \"restart\": {\n    \"client_to_server\": \(direction(restart.clientToServer)),\n"
            text += "    \"server_to_client\": \(direction(restart.serverToClient))\n  }"
        }
        return text + "\n}\n"
    }

    // swiftlint:disable identifier_name
    private struct KeyFile: Decodable {
        struct Direction: Decodable {
            let key: String
            let iv: String
            let sn_key: String

            func material(_ name: String) throws(TransportError) -> DTLSChunkKeyMaterial {
                guard let key = Hex.decode(key), let iv = Hex.decode(iv), let snKey = Hex.decode(sn_key) else {
                    throw .invalidArgument("DTLS chunk key file: \(name) has a value that is not an even number of hex digits")
                }
                return DTLSChunkKeyMaterial(key: key, iv: iv, sequenceNumberKey: snKey)
            }
        }
        struct RestartKeys: Decodable {
            let client_to_server: Direction
            let server_to_client: Direction
        }
        let cipher_suite: String
        let client_to_server: Direction
        let server_to_client: Direction
        let restart: RestartKeys?
    }
    // swiftlint:enable identifier_name

    /// Installs the keys for `role`: receive keys only, or both directions.
    func install(role: DTLSChunkAgreement.Role, sending: Bool, into protection: inout DTLSChunkProtection) throws(TransportError) {
        let (send, receive) = role == .client ? (clientToServer, serverToClient) : (serverToClient, clientToServer)
        let primary = DTLSKeyContextID(epoch: DTLSChunkProtection.firstEpoch)
        let restartContext = DTLSKeyContextID(restart: true, epoch: DTLSChunkProtection.firstEpoch)
        if !sending {
            try protection.establishReceiveKeys(receive, suite: cipherSuite, for: primary)
            if let restart {
                try protection.establishReceiveKeys(role == .client ? restart.serverToClient : restart.clientToServer,
                                                    suite: cipherSuite, for: restartContext)
            }
        } else {
            try protection.establishSendKeys(send, suite: cipherSuite, for: primary)
            if let restart {
                try protection.establishSendKeys(role == .client ? restart.clientToServer : restart.serverToClient,
                                                 suite: cipherSuite, for: restartContext)
            }
        }
    }

    /// Takes the keys `role` sends under for one association; refuses keys that already protected
    /// another association of this process.
    func claimSendKeys(role: DTLSChunkAgreement.Role) throws(TransportError) {
        guard !allowsReuseAcrossAssociations else { return }
        let sendKeys = role == .client ? [clientToServer] + (restart.map { [$0.clientToServer] } ?? [])
                                       : [serverToClient] + (restart.map { [$0.serverToClient] } ?? [])
        let fresh = sendKeys.map { PreSharedKeyLedger.shared.claim($0) }
        guard fresh.allSatisfy({ $0 }) else {
            throw .invalidArgument("these DTLS chunk pre-shared keys already protected another association in this process: sending under them again would repeat AEAD nonces (use fresh keys for each association, e.g. DTLSChunkPreSharedKeys.random())")
        }
    }
}
