internal import COpenSSL

/// The DTLS chunk on one SCTP path, between usrsctp and the datagram layer: it adds our DTLS Key
/// Management Parameter (0x8006) to the INIT or INIT ACK usrsctp builds, reads the peer's, runs the
/// establishment procedure, answers a failed one with an ABORT, installs the KMId 0 keys, and then
/// protects and unprotects every packet (`DTLSChunkProtection`). Loop thread only.
///
/// When keys go in, for KMId 0 (so that no end ever sends what the other cannot read):
/// - initiator: receive keys when the INIT ACK is agreed; send keys, and "require protected
///   packets", when the COOKIE ACK (or any packet the receive keys open) arrives, before usrsctp
///   sees it, so all it sends from then on is protected;
/// - responder: both, and "require protected packets", right after usrsctp took the COOKIE ECHO.
///   The COOKIE ACK it sent in that call goes in clear, as part of the initial SCTP handshake.
/// What a stack's recipe knows about the DTLS chunk: checked once, when the Preconnection or
/// Listener is made, and turned into a filter for each path.
struct DTLSChunkSettings: Sendable {
    let policy: DTLSChunkPolicy
    /// KMId 0's keys, when the parameters have them.
    let keys: DTLSChunkPreSharedKeys?
    /// The handshake methods' contexts (DTLS 1.3, TLS 1.3), those offered.
    let handshakes: [KeyManagementContexts]
    let replayWindow: Int
    let keyLog: KeyLog?
    /// An initiator's saved restart context (`SecurityParameters.dtlsChunkRestartContext`).
    let restartContext: DTLSChunkRestartContext?

    /// Offers DTLS 1.3 and TLS 1.3 key management when the parameters have an identity and trust
    /// roots, and pre-shared parameters (KMId 0) when they have keys; in that order.
    init(security: SecurityParameters) throws(TransportError) {
        if let unconfigured = Self.unconfiguredChoice(security) { throw .invalidArgument(unconfigured) }
        let offered = Self.offeredMethods(security)
        keys = offered.contains(.preSharedParameters) ? security.dtlsChunkKeys : nil
        try keys?.validate()
        var handshakes: [KeyManagementContexts] = []
        if offered.contains(security.dtlsChunkDTLS13KeyManagementID), let contexts = try KeyManagementContexts(dtls13: security) { handshakes.append(contexts) }
        if offered.contains(.tls13), let contexts = try KeyManagementContexts(tls13: security) { handshakes.append(contexts) }
        self.handshakes = handshakes
        guard keys != nil || !handshakes.isEmpty else {
            throw .invalidArgument("the DTLS chunk needs key management: an identity and trust roots (DTLS 1.3), or SecurityParameters.dtlsChunkKeys (KMId 0)")
        }
        guard (1...ReplayWindow.maximumSize).contains(security.dtlsChunkReplayWindow) else {
            throw .invalidArgument("dtlsChunkReplayWindow: 1 to \(ReplayWindow.maximumSize) records, not \(security.dtlsChunkReplayWindow)")
        }
        self.replayWindow = security.dtlsChunkReplayWindow
        keyLog = security.keyLog ?? .environment
        restartContext = try security.dtlsChunkRestartContext.map { bytes throws(TransportError) in try DTLSChunkRestartContext(bytes: bytes) }
        if let restartContext, !handshakes.contains(where: { $0.method == restartContext.method }) {
            throw .invalidArgument("dtlsChunkRestartContext is from \(restartContext.method), which these parameters do not offer")
        }
        // The protected restart needs the fresh primary and restart contexts that only a handshake
        // method makes after it.
        policy = DTLSChunkPolicy(methods: Self.offeredMethods(security), supportsRestart: !handshakes.isEmpty, required: security.dtlsChunkRequired)
    }

    /// The key management methods offered: those the parameters configure (DTLS 1.3 when they have
    /// an identity and PEM roots, then pre-shared parameters when they have keys), in that order or
    /// as `dtlsChunkKeyManagement` lists them.
    static func offeredMethods(_ security: SecurityParameters) -> [DTLSKeyManagementMethod] {
        let configured = configuredMethods(security)
        guard let chosen = chosenMethods(security) else { return configured }
        return chosen.filter(configured.contains)
    }

    /// `dtlsChunkKeyManagement` with `.dtls13` read as the configured DTLS 1.3 KMId.
    private static func chosenMethods(_ security: SecurityParameters) -> [DTLSKeyManagementMethod]? {
        security.dtlsChunkKeyManagement?.map { $0 == .dtls13 ? security.dtlsChunkDTLS13KeyManagementID : $0 }
    }

    /// Why `dtlsChunkKeyManagement` cannot be offered as listed; nil when it can.
    static func unconfiguredChoice(_ security: SecurityParameters) -> String? {
        let configured = configuredMethods(security)
        let id = security.dtlsChunkDTLS13KeyManagementID
        if id == .preSharedParameters || id == .tls13 {
            return "dtlsChunkDTLS13KeyManagementID \(id.rawValue) names another method; use 193 or another first-come value"
        }
        guard let method = chosenMethods(security)?.first(where: { !configured.contains($0) }) else { return nil }
        return "dtlsChunkKeyManagement lists \(method), which the parameters do not configure (DTLS 1.3: an identity and trustedRoots .pem; KMId 0: dtlsChunkKeys)"
    }

    /// The methods the parameters have what it takes for.
    static func configuredMethods(_ security: SecurityParameters) -> [DTLSKeyManagementMethod] {
        (KeyManagementContexts.configured(in: security) ? [security.dtlsChunkDTLS13KeyManagementID, .tls13] : [])
            + (security.dtlsChunkKeys != nil ? [.preSharedParameters] : [])
    }

    /// The initiating end offers only the client role, so with a listener of this SDK (which offers
    /// both) the initiator is always the key management client: `client_to_server` keys protect
    /// what the initiator sends. A peer that offers both roles on its INIT gets the tie breaker.
    func makeFilter(side: DTLSChunkPathFilter.Side) -> DTLSChunkPathFilter {
        var policy = policy
        if case .initiator = side { policy.actsAsServer = false }
        let filter = DTLSChunkPathFilter(policy: policy, side: side, keys: keys, replayWindow: replayWindow)
        filter.handshakes = handshakes
        if case .initiator = side { filter.restartContext = restartContext }
        if let keyLog { filter.logKeys(to: keyLog) }
        return filter
    }
}

final class DTLSChunkPathFilter {
    enum Side {
        /// The end that sends the INIT; its tie breaker is random.
        case initiator
        /// The listener's end. It keeps no state per INIT (SCTP's cookie does that): its tie breaker
        /// is a keyed hash of the two initiate tags, so the COOKIE ECHO reproduces it.
        case responder(tieBreakerKey: [UInt8])
    }

    /// Where negotiation stands.
    enum Status: Equatable {
        case negotiating
        /// The peer offered no DTLS chunk and we run in loose mode: plain SCTP.
        case plain
        /// Agreed; keys installed as far as the handshake got.
        case agreed
        case failed(TransportError)
    }

    let policy: DTLSChunkPolicy
    let side: Side
    let keys: DTLSChunkPreSharedKeys?
    /// The handshake methods' contexts, those offered; the association runs the agreed one.
    var handshakes: [KeyManagementContexts] = []

    /// The contexts of handshake method `method`, if it is offered.
    func handshake(for method: DTLSKeyManagementMethod) -> KeyManagementContexts? {
        handshakes.first { $0.method == method }
    }
    /// The suite a handshake method negotiated (KMId 0's is in its keys).
    var negotiatedSuite: DTLSChunkCipherSuite?
    /// The DTLS 1.3 method's peer, as its certificate's subject names it.
    var peerCertificateSubject: String?
    /// Whether the DTLS 1.3 method's first handshake resumed a session.
    var resumed = false
    /// The restarting end: the restart context saved from the association it restarts.
    var restartContext: DTLSChunkRestartContext?
    /// The restart context that protects the association since a protected restart, at either
    /// end, until the key management replaces it.
    var restartedUnder: DTLSKeyContextID?
    private(set) var protection = DTLSChunkProtection()
    private(set) var status: Status = .negotiating
    private(set) var agreement: DTLSChunkAgreement?
    private let initiatorTieBreaker = UInt32.random(in: 1...UInt32.max)
    /// Told when negotiation fails at this end (strict mode), with the error for the application.
    var onFailure: ((TransportError) -> Void)?
    /// A packet from the peer authenticated with our receive keys: the two ends' keys match.
    private(set) var peerAuthenticated = false
    /// Told once, when that first happens (from inside packet input: defer any work).
    var onPeerAuthenticated: (() -> Void)?
    /// The newest peer epoch reported to `onNewPeerEpoch`.
    private var reportedPeerEpoch: UInt64 = 0
    /// Told when a packet of the peer first authenticates under a newer primary epoch (from inside
    /// packet input: defer any work).
    var onNewPeerEpoch: ((UInt64) -> Void)?
    /// The highest TSN of DATA sent in a protected packet.
    private(set) var highestTSNSent: UInt32?
    /// The highest cumulative TSN ack of the peer's SACKs.
    private var highestCumulativeAck: UInt32?
    /// While set, told (from inside packet input) once the peer's cumulative TSN ack reaches `tsn`.
    private var ackWatch: (tsn: UInt32, reached: () -> Void)?
    /// What the send key context in use may still protect before it is due for replacement.
    private var packetsUntilRekey = Int.max
    private var bytesUntilRekey = Int.max
    /// Told once (from inside packet output: defer any work) when the send key context in use has
    /// protected its budget.
    var onRekeyDue: (() -> Void)?
    /// Where packets are protected and unprotected. Every filter runs on the SCTP loop and is done
    /// with a packet before the next, so one pair of buffers serves every association (each packet
    /// goes up or out before the call returns; unprotecting may make usrsctp send, which uses the
    /// other buffer). A pair per association kept 128 KB of each idle one resident. SCTP loop only.
    nonisolated(unsafe) private static let outputBuffer =
        UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536 + DTLSChunkProtection.maximumOverhead, alignment: 16)  // the largest SCTP packet, protected
    nonisolated(unsafe) private static let inputBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)

    init(policy: DTLSChunkPolicy, side: Side, keys: DTLSChunkPreSharedKeys?, replayWindow: Int = 64) {
        self.policy = policy
        self.side = side
        self.keys = keys
        try? protection.configureReplayWindow(replayWindow)  // checked by DTLSChunkSettings
    }

    /// The PPID of DTLS key management messages (draft "SCTP Payload Protocol Identifier").
    static let keyManagementPPID: UInt32 = 4242
    /// The largest key management message accepted (a DTLS or TLS handshake flight with certificates).
    static let maximumKeyManagementMessage = 256 * 1024
    /// Key management messages that arrived; KMId 0 has none, so any is counted and dropped.
    private(set) var keyManagementMessagesDropped = 0

    /// A whole message on PPID 4242, for the key management method.
    func keyManagementMessage(_ message: [UInt8], on streamID: UInt16) {
        // KMId 0 exchanges no messages; the handshake methods take them here.
        keyManagementMessagesDropped += 1
    }

    /// What `Connection.securityDetails` reports once the keys are agreed and in use.
    var securityDetails: SecurityDetails? {
        guard status == .agreed, protection.protectsOutput, let agreement, let suite = negotiatedSuite ?? keys?.cipherSuite else { return nil }
        return SecurityDetails(protocolVersion: "DTLSv1.3 (SCTP DTLS chunk, \(agreement.method))", cipherSuite: suite.description,
                               group: nil, applicationProtocol: nil, serverName: nil, peerCertificateSubject: peerCertificateSubject,
                               resumed: resumed)
    }

    /// The association's verification tags, initiator's first, once the handshake showed both.
    private(set) var tags: (initiator: UInt32, responder: UInt32)?

    /// Writes a `DTLSChunkKeyLog` line for every key context direction installed from now on.
    func logKeys(to keyLog: KeyLog) {
        let fromInitiatorWhenSending = isInitiator
        protection.onKeysEstablished = { [weak self] context, sending, suite, keys in
            guard let tags = self?.tags else { return }
            keyLog.write(DTLSChunkKeyLog.line(initiatorTag: tags.initiator, responderTag: tags.responder, context: context,
                                              fromInitiator: sending == fromInitiatorWhenSending, suite: suite, keys: keys))
        }
    }

    /// Starts counting a new send key context's budget (rekeying).
    func setRekeyBudget(packets: Int, bytes: Int) {
        packetsUntilRekey = packets
        bytesUntilRekey = bytes
    }

    /// Calls `reached` once the peer has acknowledged every TSN up to `tsn` (nil: nothing to wait
    /// for), at once when a SACK already did.
    func whenAcknowledged(through tsn: UInt32?, _ reached: @escaping () -> Void) {
        guard let tsn, highestCumulativeAck.map({ SCTPTSNScan.precedes($0, tsn) }) ?? true else { return reached() }
        ackWatch = (tsn, reached)
    }

    func cancelAcknowledgementWatch() { ackWatch = nil }

    /// The protection operator, for the draft's abstract API on the association.
    func withProtection<R>(_ body: (inout DTLSChunkProtection) throws(TransportError) -> R) throws(TransportError) -> R {
        try body(&protection)
    }

    /// A random key for a listener's tie breakers.
    static func randomTieBreakerKey() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Ready for the application: keys in both directions and protection required, or plain SCTP
    /// agreed in loose mode. Otherwise the error to fail the association with.
    var readiness: Result<Bool, TransportError> {
        switch status {
        case .agreed where protection.protectsOutput && protection.requiresProtection: .success(true)
        // A handshake method installs the keys after the association is up.
        case .agreed where agreement.map { handshake(for: $0.method) != nil } == true: .success(true)
        case .plain: .success(false)
        case .failed(let error): .failure(error)
        case .agreed, .negotiating:
            .failure(.handshakeFailed("the SCTP association came up before the DTLS chunk's keys were in place"))
        }
    }

    /// The path MTU usrsctp is given for a wire path MTU: less the chunk's overhead, less the 12
    /// bytes usrsctp adds on AF_CONN paths, and never more than a record's 2^14 bytes of chunks.
    static func plainPathMTU(forWireMTU mtu: Int) -> Int {
        // usrsctp's chunks per packet are at most spp_pathmtu, which is pathMTU less IPv6 and UDP.
        min(mtu - DTLSChunkProtection.maximumOverhead - SCTPPacket.commonHeaderLength,
            DTLSChunkProtection.maximumPlaintext + SCTPOptions.headerOverhead)
    }

    private var isInitiator: Bool { if case .initiator = side { true } else { false } }

    private func localParameter(clientTag: UInt32, serverTag: UInt32) -> DTLSKeyManagementParameter {
        switch side {
        case .initiator: return policy.parameter(tieBreaker: initiatorTieBreaker)
        case .responder(let key): return policy.parameter(tieBreaker: Self.tieBreaker(key: key, clientTag: clientTag, serverTag: serverTag))
        }
    }

    static func tieBreaker(key: [UInt8], clientTag: UInt32, serverTag: UInt32) -> UInt32 {
        let message = withUnsafeBytes(of: clientTag.bigEndian, Array.init) + withUnsafeBytes(of: serverTag.bigEndian, Array.init)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = HMAC(EVP_sha256(), key, Int32(key.count), message, message.count, &digest, &length)
        return UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])
    }

    // MARK: Outgoing

    /// Turns usrsctp's packet into what goes on the wire and hands it to `send` (checksum not yet
    /// filled); a packet that stays as it is goes in usrsctp's own buffer. Nothing leaves in clear
    /// once send keys are in use.
    /// INIT and INIT ACK always go in clear with our parameter, in the initial handshake and in a
    /// restart alike (draft "SCTP Restart Considerations").
    func output(_ packet: UnsafeMutableRawBufferPointer, send: (UnsafeMutableRawBufferPointer) -> Void) {
        let plain = UnsafeRawBufferPointer(packet)
        let buffer = Self.outputBuffer
        if let type = SCTPHandshakeChunks.firstChunkType(plain), type == SCTPHandshakeChunks.initType || type == SCTPHandshakeChunks.initAckType {
            guard let parameter = outgoingParameter(plain, type: type),
                  let length = SCTPHandshakeChunks.appending(parameter, to: plain, into: buffer) else { return send(packet) }
            return send(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]))
        }
        guard protection.protectsOutput else { return send(packet) }
        guard let length = protection.protect(plain, into: buffer) else { return }
        noteProtected(plain)
        send(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]))
    }

    /// Counts a protected packet against the rekey budget and notes its highest TSN.
    private func noteProtected(_ plain: UnsafeRawBufferPointer) {
        if let tsn = SCTPTSNScan.highestDataTSN(plain), highestTSNSent.map({ SCTPTSNScan.precedes($0, tsn) }) ?? true {
            highestTSNSent = tsn
        }
        packetsUntilRekey -= 1
        bytesUntilRekey -= plain.count - SCTPPacket.commonHeaderLength
        if packetsUntilRekey <= 0 || bytesUntilRekey <= 0 {
            packetsUntilRekey = .max
            bytesUntilRekey = .max
            onRekeyDue?()
        }
    }

    /// Ours goes in our INIT (initiator) or INIT ACK (responder). The INIT ACK's tags: the common
    /// header's verification tag is the client's initiate tag, the chunk's initiate tag ours.
    private func outgoingParameter(_ packet: UnsafeRawBufferPointer, type: UInt8) -> DTLSKeyManagementParameter? {
        switch (side, type) {
        case (.initiator, SCTPHandshakeChunks.initType):
            return localParameter(clientTag: 0, serverTag: 0)
        case (.responder, SCTPHandshakeChunks.initAckType):
            guard let serverTag = SCTPHandshakeChunks.initiateTag(packet, chunkAt: SCTPHandshakeChunks.common) else { return nil }
            return localParameter(clientTag: SCTPHandshakeChunks.uint32(packet, at: 4), serverTag: serverTag)
        default:
            return nil
        }
    }

    // MARK: Incoming

    /// Reads one packet (checksum verified) and hands what usrsctp should see to `deliver`, or an
    /// ABORT for the peer to `reply`; drops the rest.
    func input(_ packet: UnsafeRawBufferPointer, deliver: (UnsafeRawBufferPointer) -> Void, reply: ([UInt8]) -> Void) {
        let type = SCTPHandshakeChunks.firstChunkType(packet)
        switch (side, type, status) {
        case (.responder, SCTPHandshakeChunks.initType, _):
            // Stateless: refuse an INIT we could never agree with, else let usrsctp answer it.
            let peer = SCTPHandshakeChunks.keyManagementParameter(packet, chunkAt: SCTPHandshakeChunks.common)
            if let failure = compatibilityFailure(peer), policy.required {
                if let abort = SCTPHandshakeChunks.abort(answering: packet, causeCode: failure.causeCode) { reply(abort) }
                return
            }
            deliver(packet)
        case (.initiator, SCTPHandshakeChunks.initAckType, .negotiating):
            if let responderTag = SCTPHandshakeChunks.initiateTag(packet, chunkAt: SCTPHandshakeChunks.common) {
                tags = (SCTPHandshakeChunks.uint32(packet, at: 4), responderTag)
            }
            let peer = SCTPHandshakeChunks.keyManagementParameter(packet, chunkAt: SCTPHandshakeChunks.common)
            guard negotiate(local: localParameter(clientTag: 0, serverTag: 0), peer: peer, reply: reply, abort: { cause in
                SCTPHandshakeChunks.abort(answering: packet, causeCode: cause)
            }) else { return }
            deliver(packet)
        case (.responder, SCTPHandshakeChunks.cookieEchoType, .negotiating):
            guard let cookie = SCTPHandshakeChunks.cookieContents(packet) else {
                // Not a cookie of the layout we read: usrsctp decides, and the association, if any, is plain.
                if !policy.required { deliver(packet) }
                return
            }
            tags = (cookie.clientTag, cookie.serverTag)
            let local = localParameter(clientTag: cookie.clientTag, serverTag: cookie.serverTag)
            guard negotiate(local: local, peer: cookie.clientParameter, reply: reply, abort: { cause in
                SCTPHandshakeChunks.abort(answering: packet, verificationTag: cookie.clientTag, causeCode: cause)
            }) else { return }
            deliver(packet)
            if status == .agreed { installKeys(sending: true) }
        case (.initiator, SCTPHandshakeChunks.cookieAckType, .agreed) where !protection.protectsOutput:
            installKeys(sending: true)
            deliver(packet)
        default:
            unprotect(packet, deliver: deliver)
        }
    }

    private func unprotect(_ packet: UnsafeRawBufferPointer, deliver: (UnsafeRawBufferPointer) -> Void) {
        let buffer = Self.inputBuffer
        switch protection.unprotect(packet, into: buffer) {
        case .plain:
            deliver(packet)
        case .unprotected(let length):
            let plain = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
            if packet[SCTPPacket.commonHeaderLength + 1] & DTLSChunkProtection.restartFlag != 0, !admitRestartPacket(plain) { return }
            // The responder has our COOKIE ECHO: an initiator whose COOKIE ACK was lost starts
            // sending protected now.
            if isInitiator, status == .agreed, !protection.protectsOutput { installKeys(sending: true) }
            if !peerAuthenticated {
                peerAuthenticated = true
                onPeerAuthenticated?()
            }
            noteAuthenticated(plain)
            deliver(plain)
        case .dropped:
            break
        }
    }

    // MARK: Protected SCTP restart (draft "SCTP Restart Considerations")

    /// A packet the peer protected with a restart context. A COOKIE ECHO whose tags are not the
    /// association's is the peer's restart: the restart context it came under protects what this
    /// end sends from the COOKIE ACK on (usrsctp answers within this call), the primary contexts
    /// go, and the 0x8006 agreement is the restart INIT's. False (the packet is dropped and
    /// counted) when no restart was agreed with a handshake method, or the restart INIT's
    /// parameter would change the method or our role. Anything else under a restart context is
    /// the restarted association's traffic.
    private func admitRestartPacket(_ plain: UnsafeRawBufferPointer) -> Bool {
        guard let cookie = SCTPHandshakeChunks.cookieContents(plain),
              tags.map({ $0 != (cookie.clientTag, cookie.serverTag) }) ?? true else { return true }
        let local = localParameter(clientTag: cookie.clientTag, serverTag: cookie.serverTag)
        guard let agreement, agreement.restartSupported, handshake(for: agreement.method) != nil,
              let context = protection.lastRestartContextOpened,
              case .success(let renewed) = DTLSChunkNegotiation.agree(local: local, peer: cookie.clientParameter),
              renewed.method == agreement.method, renewed.role == agreement.role, protection.restart(under: context)
        else {
            protection.countRefusedRestart()
            return false
        }
        self.agreement = renewed
        tags = (cookie.clientTag, cookie.serverTag)
        restartedUnder = context
        reportedPeerEpoch = 0
        highestTSNSent = nil
        highestCumulativeAck = nil
        ackWatch = nil
        setRekeyBudget(packets: .max, bytes: .max)
        return true
    }

    /// The restarting end, once the INIT ACK agreed: the saved restart context protects from the
    /// COOKIE ECHO on, both ways, and nothing in clear is accepted. False (and the association
    /// fails) when the peer did not set the R bit, or agreed another method or role than the
    /// context was made with.
    private func resumeUnderRestartContext(_ saved: DTLSChunkRestartContext) -> Bool {
        guard let agreement else { return false }
        do throws(TransportError) {
            guard agreement.restartSupported else {
                throw .handshakeFailed("SCTP restart: the peer does not offer the protected restart (no R bit in its DTLS Key Management parameter)")
            }
            guard agreement.method == saved.method, agreement.role == saved.role else {
                throw .handshakeFailed("SCTP restart: the peer agreed \(agreement.method) as our \(agreement.role) role; the restart context is from \(saved.method) as \(saved.role)")
            }
            try protection.establishReceiveKeys(saved.receive, suite: saved.suite, for: saved.contextID)
            try protection.establishSendKeys(saved.send, suite: saved.suite, for: saved.contextID)
            _ = protection.useSendKeys(saved.contextID)
            protection.requireProtectedPackets()
            restartedUnder = saved.contextID
            negotiatedSuite = saved.suite
            return true
        } catch {
            status = .failed(error)
            onFailure?(error)
            return false
        }
    }

    /// Reports a newer peer epoch, and keeps the peer's highest cumulative TSN ack for the drain
    /// rule, telling a watch that waits for it.
    private func noteAuthenticated(_ plain: UnsafeRawBufferPointer) {
        if protection.newestPeerPrimaryEpoch > reportedPeerEpoch {
            reportedPeerEpoch = protection.newestPeerPrimaryEpoch
            onNewPeerEpoch?(reportedPeerEpoch)
        }
        guard let ack = SCTPTSNScan.cumulativeTSNAck(plain) else { return }
        if highestCumulativeAck.map({ SCTPTSNScan.precedes($0, ack) }) ?? true { highestCumulativeAck = ack }
        if let watch = ackWatch, !SCTPTSNScan.precedes(ack, watch.tsn) {
            ackWatch = nil
            watch.reached()
        }
    }

    /// The draft's "compatible": a KMId in common and a role that complements ours.
    /// (Our policy lists only methods we can run.)
    private func compatibilityFailure(_ peer: DTLSKeyManagementParameter?) -> DTLSChunkNegotiationFailure? {
        guard let peer else { return .missingSupport }
        let ours = policy.parameter(tieBreaker: 0).flags, theirs = peer.flags
        let complements = (ours.contains(.client) && theirs.contains(.server)) || (ours.contains(.server) && theirs.contains(.client))
        guard complements else { return .incompatibleRoles }
        guard peer.methods.contains(where: policy.methods.contains) else { return .noCommonMethod }
        return nil
    }

    /// Runs the establishment procedure; false when the packet must not reach usrsctp.
    /// `abort` makes the ABORT that answers the packet, with an error cause.
    private func negotiate(local: DTLSKeyManagementParameter, peer: DTLSKeyManagementParameter?,
                           reply: ([UInt8]) -> Void, abort: (UInt16) -> [UInt8]?) -> Bool {
        switch DTLSChunkNegotiation.agree(local: local, peer: peer) {
        case .success(let agreement):
            let supported = agreement.method == .preSharedParameters ? keys != nil : handshake(for: agreement.method) != nil
            guard supported else { return fail(.noCommonMethod, reply: reply, abort: abort) }
            if !isInitiator, agreement.method == .preSharedParameters, let keys {
                // The responder sends under its keys as soon as usrsctp has the COOKIE ECHO: a
                // refusal answers it with an ABORT, as keys we do not have would.
                do throws(TransportError) { try keys.claimSendKeys(role: agreement.role) } catch {
                    return fail(.noCommonMethod, reply: reply, abort: abort, error: error)
                }
            }
            self.agreement = agreement
            status = .agreed
            installKeys(sending: false)
            if isInitiator, let restartContext, !resumeUnderRestartContext(restartContext) { return false }
            return status == .agreed
        case .failure(let failure):
            guard policy.required else {
                status = .plain
                return true
            }
            return fail(failure, reply: reply, abort: abort)
        }
    }

    /// Ends the establishment with an ABORT carrying `failure`'s cause; this end reports `error`
    /// when it knows more than the cause says.
    private func fail(_ failure: DTLSChunkNegotiationFailure, reply: ([UInt8]) -> Void, abort: (UInt16) -> [UInt8]?,
                      error: TransportError? = nil) -> Bool {
        let error = error ?? failure.transportError
        status = .failed(error)
        if let packet = abort(failure.causeCode) { reply(packet) }
        onFailure?(error)
        return false
    }

    /// KMId 0's keys; a handshake method installs its own through the association.
    private func installKeys(sending: Bool) {
        guard let agreement, agreement.method == .preSharedParameters, let keys else { return }
        do throws(TransportError) {
            // The initiator takes its send keys when it starts sending under them (the responder did in `negotiate`).
            if sending, isInitiator { try keys.claimSendKeys(role: agreement.role) }
            try keys.install(role: agreement.role, sending: sending, into: &protection)
            if sending { protection.requireProtectedPackets() }
        } catch {
            status = .failed(error)
            onFailure?(error)
        }
    }
}
