import TapsDTLS13

/// A handshake key management method of the DTLS chunk on one association: DTLS 1.3
/// (draft-westerlund-tsvwg-sctp-dtls-handshake, on BoringSSL) or TLS 1.3
/// (draft-porfiri-tsvwg-sctp-dtls-handshake, on the system OpenSSL). Mutually authenticated
/// handshakes in SCTP user messages on PPID 4242 (each message the method's index byte, the DCI or
/// T bit and epoch, then records); the chunk's keys from the exporter; PVALID or Protection
/// Established; rekeying by new connections. Loop thread only.
///
/// The first handshake, so that no end sends what the other cannot read yet:
/// - the client, when its handshake completes, sends its Finished in clear and installs its
///   receive keys;
/// - the server, when the Finished arrives, installs both directions and sends PVALID (Protection
///   Established), which goes protected;
/// - the client, on it, installs its send keys and requires protection: it is ready;
/// - the server, on the client's first protected packet, requires protection: it is ready.
///
/// Rekeying: the end whose policy is due, or whose application called `updateKeys()`, opens a new
/// connection as its client, on the next index, which is also the new keys' epoch. At most two
/// connections exist: a rekey waits until the replaced one is gone. When both ends start at once,
/// one ClientHello goes on and the other end drops its own: on the DTLS method that of the end that
/// was client of the connection in use, on the TLS method that of the key management client. The
/// new connection's server uses the new keys as soon as it has them (its client could read them
/// before it sent its Finished), and on the TLS method says so with Protection Established; the
/// client uses them on the first packet that arrives under them. The replaced connection's key
/// contexts go once a packet arrived under the new keys and the peer acknowledged every TSN sent
/// under the old ones, or after the drain limit; the DTLS method closes the connection with
/// close_notify then, the TLS method as soon as its keys are in. Each new handshake verifies the
/// peer's certificate again, and must show the same identity.
///
/// After a protected SCTP restart (chunk draft "SCTP Restart Considerations") the association is
/// protected at once by the restart context, and a fresh first connection (index 3) starts at
/// once: its keys are epoch 3, used as a rekey's are, and once the drain rule lets the restart
/// context go, the new connection's restart context replaces it. The new connection's peer must
/// show the identity the association had.
///
/// With a trust verifier (IV), the engine records its validation verdict instead of enforcing it,
/// and the verifier decides once a handshake is done, before any key of that connection protects
/// what this end sends: the server sends PVALID, and the client becomes ready, only on `.trust`; a
/// rekey's keys are installed only on `.trust`. A rejection ends the association.
final class HandshakeKeyManagement {
    /// The identity and trust of each new key management connection; replacing them (a renewed
    /// certificate) takes effect on the next rekey.
    var contexts: KeyManagementContexts
    private let agreement: DTLSChunkAgreement
    /// This end sent the INIT (the TLS method binds its keys to the initiator's parameter first).
    private let initiated: Bool
    private weak var association: SCTPAssociation?
    private let loop: EventLoop
    private let policy: DTLSChunkRekeyPolicy
    private let handshakeTimeout: Duration
    /// Where the client keeps the peer's session tickets (CM): the Preconnection's session cache,
    /// under the peer's address and our own key (a session resumes the identity it was made with).
    /// Nil on the server.
    private let sessionKey: String?
    /// The connection whose keys are in use (during the first handshake, the one handshaking).
    private var current: KeyManagementConnection
    /// A rekeying connection: handshaking, or finished and waiting for the peer to use its keys.
    private var next: KeyManagementConnection?
    /// The connection replaced, until the drain rule lets it go.
    private var retiring: KeyManagementConnection?
    /// Who the peer's certificate of the first handshake names; every later one must name it again
    /// (a renewed certificate may differ in key and validity).
    private(set) var peerIdentity: CertificateIdentity?
    /// A rekey asked for while the replaced connection (or the restart context) still drains.
    private var rekeyWanted = false
    /// After a protected restart: the restart context that protects traffic until the first
    /// connection's keys replace it.
    private var restartContextInUse: DTLSKeyContextID?
    private var receivedUnderCurrent = false
    /// The first handshake's client: PVALID arrived, and the peer is trusted (by the verifier, or by
    /// BoringSSL's validation when there is none). It is ready when both hold.
    private var protectionValidArrived = false
    private var peerTrusted = false
    private var oldAcknowledged = false
    private var ageTimer: UVTimer?
    private var drainTimer: UVTimer?
    private var rekeyDeadline: UVTimer?
    private(set) var completed = false
    private var failed = false
    /// New key contexts put in use since the first.
    private(set) var rekeys = 0
    /// Messages on PPID 4242 no connection could take (unknown DCI, or a ClientHello dropped by the
    /// simultaneous-rekey rule).
    private(set) var messagesDropped = 0
    /// Rekeys both ends started at once, resolved by the rule above.
    private(set) var simultaneousStarts = 0
    /// Told once the association may go to the application, or why it may not.
    var onCompletion: ((TransportError?) -> Void)?
    /// New keys are in use; true when the peer started the rekey.
    var onKeysUpdated: ((_ byPeer: Bool) -> Void)?
    /// After completion: the association must end (a rekey failed, the identity changed).
    var onFailure: ((TransportError) -> Void)?

    /// `peer` names the peer's address, under which a client keeps and offers its session. After
    /// a protected restart, `restart` is the restart context in use and the identity the peer had.
    init(contexts: KeyManagementContexts, agreement: DTLSChunkAgreement, initiated: Bool, association: SCTPAssociation, peer: String?,
         loop: EventLoop, handshakeTimeout: Duration, restart: (context: DTLSKeyContextID, peerIdentity: CertificateIdentity?)? = nil) throws(TransportError) {
        self.contexts = contexts
        self.agreement = agreement
        self.initiated = initiated
        self.association = association
        self.loop = loop
        self.policy = contexts.rekeyPolicy
        self.handshakeTimeout = handshakeTimeout
        restartContextInUse = restart?.context
        peerIdentity = restart?.peerIdentity
        let role: KeyManagementRole = agreement.role == .client ? .client : .server
        let sessionKey = role == .client ? peer.map { "dtls-chunk \(contexts.method.rawValue) \(contexts.ownKeyPin) \($0)" } : nil
        self.sessionKey = sessionKey
        // Only the first connection resumes: each rekey's verifies the peer's certificate again.
        current = try Self.connection(index: DTLSKeyManagementMessage.firstConnectionIndex, role: role, contexts: contexts,
                                      sessionKey: sessionKey, association: association, loop: loop)
    }

    private static func connection(index: UInt64, role: KeyManagementRole, contexts: KeyManagementContexts, sessionKey: String?,
                                   association: SCTPAssociation, loop: EventLoop) throws(TransportError) -> KeyManagementConnection {
        // The first handshake on stream 0, as PVALID; the DTLS method's rekeys on a stream of their
        // own, the TLS method's on stream 0 (draft-porfiri "TLS Message Transport").
        let first = index == DTLSKeyManagementMessage.firstConnectionIndex
        let onStreamZero = first || contexts.handshake == .tls13
        return try contexts.connection(index: index, role: role, sessionKey: sessionKey, resumes: first, isRekey: !first,
                                       loop: loop) { [weak association] message in
            guard let association else { return }
            association.sendKeyManagement(message, on: onStreamZero ? 0 : association.rekeyStreamID)
        }
    }

    private func connection(index: UInt64, role: KeyManagementRole) throws(TransportError) -> KeyManagementConnection? {
        guard let association else { return nil }
        return try Self.connection(index: index, role: role, contexts: contexts, sessionKey: sessionKey, association: association, loop: loop)
    }

    deinit {
        for timer in [ageTimer, drainTimer, rekeyDeadline] { timer?.close() }
    }

    var cipherSuite: DTLSChunkCipherSuite? { current.suite }
    /// Whether the first handshake resumed a session (CM).
    private(set) var resumed = false
    /// Whether the connection whose keys are in use resumed (never a rekey's).
    var currentConnectionResumed: Bool { current.resumed }
    /// The subject of the certificate the peer authenticated with (the same on every rekey).
    var peerCertificateSubject: String? { peerIdentity?.subjectLine }
    /// The DCI (and chunk epoch) of the connection whose keys are in use.
    var connectionIndex: UInt64 { current.index }

    func start() {
        if restartContextInUse != nil { beginAfterRestart() }
        current.start()
    }

    /// Stops an association's key management that a restart replaced: no close_notify (the peer's
    /// end of these connections is gone), no timer, nothing more from it.
    func abandon() {
        failed = true
        for connection in [current, next, retiring].compactMap({ $0 }) { connection.stopTimer() }
        for timer in [ageTimer, drainTimer, rekeyDeadline] { timer?.close() }
    }

    /// SSKE: keying material from the exporter of the key management connection whose keys are in
    /// use (RFC 8446 section 7.5, and RFC 9147 for DTLS). Each rekey is a new connection with its own
    /// exporter secret, so the same arguments give other bytes after a rekey (`connectionIndex`
    /// says which connection answered). The labels the chunk's keys come from are refused: an
    /// application that could export them would hold the association's traffic keys.
    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        guard completed, !failed else { throw .connectionClosed("the \(contexts.handshake.name) key management is not established; nothing to export keying material from") }
        try KeyingMaterialExport.validate(label: label, length: length)
        guard !label.hasPrefix(DTLSChunkKeyExport.labelPrefix), !label.hasPrefix(TLSChunkKeyExport.label) else {
            throw .invalidArgument("\(label) is a label the DTLS chunk's own keys are exported under; an application may not export them")
        }
        guard let bytes = current.exportKeyingMaterial(label: label, context: context, length: length) else {
            throw .invalidArgument("the \(contexts.handshake.name) key management refused to export keying material under \(label)")
        }
        return bytes
    }

    /// A message on PPID 4242.
    func receive(_ message: [UInt8]) {
        guard !failed else { return }
        defer { keepSessions() }
        let method = contexts.handshake
        guard let parsed = method.parse(message) else {
            messagesDropped += 1
            return
        }
        guard case .records(let indexBits, let records, let clientHello) = parsed else {
            if !completed { return protectionValid() }
            // TLS method: the server confirms a rekey's keys (a packet under them has switched us already).
            if let next, next.keys != nil, next.role == .client {
                do throws(TransportError) { try switchSending(to: next) } catch { failAfterCompletion(error) }
            }
            return
        }
        func owns(_ connection: KeyManagementConnection) -> Bool { UInt64(indexBits) == connection.index & method.indexMask }
        guard completed else {
            guard owns(current) else {
                messagesDropped += 1
                return
            }
            current.receive(records)
            if case .failed(let error) = current.state { return finish(error) }
            if current.state == .established, current.keys == nil { firstHandshakeCompleted() }
            return
        }
        if owns(current) {
            current.receive(records)
            if case .failed(let error) = current.state { return failAfterCompletion(error) }
            if restartContextInUse != nil, current.state == .established, current.keys == nil { return restartHandshakeCompleted() }
            if current.state == .closed, next == nil, !method.closesAfterKeying {
                failAfterCompletion(.protocolViolation("the peer closed the only DTLS key management connection (draft-westerlund, \"DTLS Connection Handling\")"))
            }
        } else if let retiring, owns(retiring) {
            retiring.receive(records)
            // The peer's close_notify (DTLS method): it has let the old keys go.
            if retiring.state == .closed, !method.closesAfterKeying { retireOld() }
        } else if let next, owns(next) {
            if next.role == .client, clientHello {
                // Both ends started a rekey: one ClientHello goes on.
                simultaneousStarts += 1
                let peersHelloGoesOn = method == .dtls13 ? current.role == .server : agreement.role == .server
                guard peersHelloGoesOn else {
                    messagesDropped += 1
                    return
                }
                next.stopTimer()
                self.next = nil
                acceptRekey(records)
                return
            }
            next.receive(records)
            progress(next)
        } else if UInt64(indexBits) == (current.index + 1) & method.indexMask, clientHello {
            acceptRekey(records)
        } else {
            messagesDropped += 1
        }
    }

    // MARK: The first handshake

    private func firstHandshakeCompleted() {
        guard association != nil else { return }
        do throws(TransportError) {
            let suite = try current.exportKeys(agreement: agreement, initiated: initiated)
            peerIdentity = try requireSamePeer(in: current)
            resumed = current.resumed
            try installReceiveKeys(of: current, suite: suite)
            decideTrust(in: current) { me in
                if me.current.role == .client {
                    me.peerTrusted = true
                    return me.completeClient()
                }
                guard let association = me.association else { return }
                do throws(TransportError) {
                    try me.installSendKeys(of: me.current, suite: suite)
                    association.whenPeerAuthenticates { [weak me] in me?.serverSawProtectedPacket() }
                    // PVALID goes protected: the send keys are in use from now on.
                    association.sendKeyManagement(me.contexts.handshake.protectionValid(for: me.current.index), on: 0)
                    me.closeIfDoneWith(me.current)
                } catch {
                    me.finish(error)
                }
            }
        } catch {
            finish(error)
        }
    }

    /// The client: the server has the keys and says so.
    private func protectionValid() {
        guard current.role == .client else { return }
        protectionValidArrived = true
        completeClient()
    }

    private func completeClient() {
        guard protectionValidArrived, peerTrusted, let suite = current.suite, let association else { return }
        do throws(TransportError) {
            try installSendKeys(of: current, suite: suite)
            try association.requireProtectedPackets()
            closeIfDoneWith(current)
            finish(nil)
        } catch {
            finish(error)
        }
    }

    /// TLS method: a connection whose keys are in is closed at once (close_notify); the exporter
    /// stays usable for SSKE.
    private func closeIfDoneWith(_ connection: KeyManagementConnection) {
        if contexts.handshake.closesAfterKeying { connection.close() }
    }

    /// Runs `proceed` once the peer of `connection` is trusted: at once without a trust verifier
    /// (the engine validated the chain in the handshake), otherwise when the verifier says `.trust`.
    /// The verifier runs off the loop; a rejection ends the association.
    private func decideTrust(in connection: KeyManagementConnection, then proceed: @escaping (HandshakeKeyManagement) -> Void) {
        guard let verifier = contexts.trustVerifier else { return proceed(self) }
        let challenge = TrustChallenge(role: connection.role == .client ? .client : .server, peerChain: connection.peerCertificateChainDER,
                                       defaultValidationError: connection.peerValidationError, serverName: nil)
        let me = LoopBound(self)
        let proceeding = LoopConfined(value: proceed)
        Task { [loop] in
            let decision = await verifier.body(challenge)
            loop.execute {
                guard let self = me.value, !self.failed else { return }
                guard case .reject(let reason) = decision else { return proceeding.value(self) }
                let error = TransportError.certificateRejected("\(self.contexts.handshake.name) key management: the trust verifier rejected the peer: \(reason)")
                if self.completed { self.failAfterCompletion(error) } else { self.finish(error) }
            }
        }
    }

    private func serverSawProtectedPacket() {
        do throws(TransportError) {
            try association?.requireProtectedPackets()
            finish(nil)
        } catch {
            finish(error)
        }
    }

    private func finish(_ error: TransportError?) {
        guard !completed else { return }
        completed = true
        if error != nil { failed = true }
        if let metrics = association?.path.metrics {
            if error == nil { metrics.handshakeCompleted(resumed: false) } else { metrics.handshakesFailed.increment() }
        }
        onCompletion?(error)
        if error == nil { followKeyUse() }
    }

    /// Rekeys when the send key context's budget is spent, and hears of the peer's new epochs.
    private func followKeyUse() {
        guard let filter = association?.path.chunkFilter else { return }
        let me = LoopBound(self)
        filter.onRekeyDue = { [loop] in loop.execute { me.value?.requestRekey() } }
        filter.onNewPeerEpoch = { [loop] epoch in loop.execute { me.value?.peerUsesEpoch(epoch) } }
        startKeyLifetime()
    }

    // MARK: After a protected restart

    /// The restart context protects both ways already: the association is ready, and the first
    /// connection's handshake must finish within the handshake timeout.
    private func beginAfterRestart() {
        completed = true
        onCompletion?(nil)
        followKeyUse()
        rekeyDeadline = UVTimer.schedule(on: loop, after: Self.milliseconds(handshakeTimeout)) { [weak self, handshakeTimeout] in
            guard let self, current.keys == nil else { return }
            failAfterCompletion(.timedOut("\(contexts.handshake.name) key management: the handshake after the SCTP restart did not finish within \(handshakeTimeout)"))
        }
    }

    private func restartHandshakeCompleted() {
        do throws(TransportError) {
            peerIdentity = try requireSamePeer(in: current)
            resumed = current.resumed
            let suite = try current.exportKeys(agreement: agreement, initiated: initiated)
            decideTrust(in: current) { me in me.useConnectionAfterRestart(suite: suite) }
        } catch {
            failAfterCompletion(error)
        }
    }

    /// The new connection's epoch 3 keys go in as a rekey's do: receive keys now; the server sends
    /// under them at once, the client once a packet of the peer arrives under them.
    private func useConnectionAfterRestart(suite: DTLSChunkCipherSuite) {
        do throws(TransportError) {
            let keys = try write(current.peerWrite)
            try association?.establishReceiveKeys(keys.primary, suite: suite, for: current.primaryContext)
            rekeyDeadline?.close()
            rekeyDeadline = nil
            association?.path.metrics?.handshakeCompleted(resumed: current.resumed)
            if current.role == .server || (association?.path.chunkFilter?.protection.newestPeerPrimaryEpoch ?? 0) >= current.index {
                try switchSending(to: current)
            } else {
                association?.requestHeartbeat()
            }
        } catch {
            failAfterCompletion(error)
        }
    }

    /// The restart context has drained: the first connection's restart context takes its place
    /// (destroyed first, as both may be epoch 3).
    private func replaceRestartContext(_ old: DTLSKeyContextID) throws(TransportError) {
        guard let association, let suite = current.suite else { return }
        _ = try association.destroySendKeys(for: old)
        _ = try association.destroyReceiveKeys(for: old)
        try association.establishReceiveKeys(try write(current.peerWrite).restart, suite: suite, for: current.restartContext)
        try association.establishSendKeys(try write(current.ownWrite).restart, suite: suite, for: current.restartContext)
        association.path.chunkFilter?.restartedUnder = nil
    }

    /// The restart context this end would restart the association with: that of the connection in
    /// use, with the peer's certificate. Nil until a handshake made one (and after a restart, until
    /// the new one replaced the context that restart used).
    func restartContext() -> DTLSChunkRestartContext? {
        guard completed, !failed, restartContextInUse == nil, let own = current.ownWrite, let peer = current.peerWrite,
              let suite = current.suite, let certificate = current.peerCertificateDER,
              let localPort = association?.path.lower.localAddress?.port else { return nil }
        return DTLSChunkRestartContext(method: agreement.method, role: current.role == .client ? .client : .server, suite: suite,
                                       epoch: current.index, localPort: localPort, send: own.restart, receive: peer.restart,
                                       peerCertificateDER: certificate)
    }

    // MARK: Rekeying

    /// Rekeys now, or as soon as the replaced connection is gone; nothing while a rekey runs.
    func requestRekey() {
        guard completed, !failed, next == nil else { return }
        guard retiring == nil, restartContextInUse == nil else {
            rekeyWanted = true
            return
        }
        do throws(TransportError) {
            guard let connection = try connection(index: current.index + 1, role: .client) else { return }
            next = connection
            armRekeyDeadline()
            connection.start()
        } catch {
            failAfterCompletion(error)
        }
    }

    /// The peer opens the next connection. It only does so once it has let the replaced one go.
    private func acceptRekey(_ clientHello: [UInt8]) {
        if retiring != nil || restartContextInUse != nil { retireOld() }
        do throws(TransportError) {
            guard let connection = try connection(index: current.index + 1, role: .server) else { return }
            next = connection
            armRekeyDeadline()
            connection.start()
            connection.receive(clientHello)
            progress(connection)
        } catch {
            failAfterCompletion(error)
        }
    }

    private func progress(_ connection: KeyManagementConnection) {
        switch connection.state {
        case .failed(let error): failAfterCompletion(error)
        case .established where connection.keys == nil: rekeyHandshakeCompleted(connection)
        default: break
        }
    }

    private func rekeyHandshakeCompleted(_ connection: KeyManagementConnection) {
        do throws(TransportError) {
            _ = try requireSamePeer(in: connection)
            let suite = try connection.exportKeys(agreement: agreement, initiated: initiated)
            // Until the verdict no key of the new connection is installed, so no packet of the peer
            // authenticates under its epoch and nothing switches to it.
            decideTrust(in: connection) { me in me.useRekeyedConnection(connection, suite: suite) }
        } catch {
            failAfterCompletion(error)
        }
    }

    private func useRekeyedConnection(_ connection: KeyManagementConnection, suite: DTLSChunkCipherSuite) {
        do throws(TransportError) {
            try installReceiveKeys(of: connection, suite: suite)
            try association?.establishSendKeys(try write(connection.ownWrite).restart, suite: suite, for: connection.restartContext)
            rekeyDeadline?.close()
            rekeyDeadline = nil
            association?.path.metrics?.handshakeCompleted(resumed: false)
            if connection.role == .server {
                try switchSending(to: connection)
            } else if let filter = association?.path.chunkFilter, filter.protection.newestPeerPrimaryEpoch >= connection.index {
                try switchSending(to: connection)
            } else {
                // The server uses the new keys once it has them; a HEARTBEAT makes sure something
                // comes back under them.
                association?.requestHeartbeat()
            }
        } catch {
            failAfterCompletion(error)
        }
    }

    /// A packet of the peer authenticated under a newer epoch than before.
    private func peerUsesEpoch(_ epoch: UInt64) {
        if let next, next.keys != nil, next.role == .client, epoch >= next.index {
            do throws(TransportError) { try switchSending(to: next) } catch { failAfterCompletion(error) }
        }
        if restartContextInUse != nil, current.keys != nil, epoch >= current.index,
           association?.path.chunkFilter?.protection.sendKeyInUse?.restart == true {
            do throws(TransportError) { try switchSending(to: current) } catch { failAfterCompletion(error) }
        }
        if retiring != nil || restartContextInUse != nil, epoch >= current.index, !receivedUnderCurrent {
            receivedUnderCurrent = true
            drainProgress()
        }
    }

    /// The new primary keys protect from the next packet on; the old connection (or, after a
    /// restart, the restart context) starts draining. On the TLS method the server then sends
    /// Protection Established, under the new keys, and both ends close the new connection.
    private func switchSending(to connection: KeyManagementConnection) throws(TransportError) {
        guard let association, let filter = association.path.chunkFilter, let suite = connection.suite,
              filter.protection.sendKeyInUse != connection.primaryContext else { return }
        let lastOldTSN = filter.highestTSNSent
        try association.establishSendKeys(try write(connection.ownWrite).primary, suite: suite, for: connection.primaryContext)
        if connection !== current {
            retiring = current
            current = connection
            next = nil
            rekeys += 1
            association.path.metrics?.keyUpdates.increment()
        }
        receivedUnderCurrent = filter.protection.newestPeerPrimaryEpoch >= connection.index
        oldAcknowledged = false
        let me = LoopBound(self)
        filter.whenAcknowledged(through: lastOldTSN) { [loop] in
            loop.execute {
                guard let self = me.value else { return }
                self.oldAcknowledged = true
                self.drainProgress()
            }
        }
        drainTimer?.close()
        drainTimer = UVTimer.schedule(on: loop, after: Self.milliseconds(policy.drainLimit)) { [weak self] in self?.retireOld() }
        startKeyLifetime()
        onKeysUpdated?(connection.role == .server)
        if connection.role == .server, contexts.handshake.confirmsEveryHandshake {
            association.sendKeyManagement(contexts.handshake.protectionValid(for: connection.index), on: 0)
        }
        closeIfDoneWith(connection)
        // The peer's drain waits for a packet under the new keys; a HEARTBEAT sends one now even
        // when this end has nothing else to say.
        association.requestHeartbeat()
        drainProgress()
    }

    private func drainProgress() {
        if receivedUnderCurrent, oldAcknowledged { retireOld() }
    }

    /// Closes the replaced connection (close_notify, unless the peer closed it first) and destroys
    /// its key contexts; then runs a rekey that waited for it.
    private func retireOld() {
        guard retiring != nil || restartContextInUse != nil else { return }
        drainTimer?.close()
        drainTimer = nil
        association?.path.chunkFilter?.cancelAcknowledgementWatch()
        if let old = retiring {
            retiring = nil
            old.close()
            for context in [old.primaryContext, old.restartContext] {
                _ = try? association?.destroySendKeys(for: context)
                _ = try? association?.destroyReceiveKeys(for: context)
            }
        } else if let old = restartContextInUse {
            restartContextInUse = nil
            do throws(TransportError) { try replaceRestartContext(old) } catch { return failAfterCompletion(error) }
        }
        if rekeyWanted {
            rekeyWanted = false
            requestRekey()
        }
    }

    /// The send key context in use starts its budget and its age.
    private func startKeyLifetime() {
        guard let suite = current.suite else { return }
        association?.path.chunkFilter?.setRekeyBudget(packets: policy.packetBudget(for: suite), bytes: policy.afterBytes ?? .max)
        ageTimer?.close()
        ageTimer = policy.afterTime.map { age in
            UVTimer.schedule(on: loop, after: Self.milliseconds(age)) { [weak self] in self?.requestRekey() }
        }
    }

    private func armRekeyDeadline() {
        rekeyDeadline?.close()
        rekeyDeadline = UVTimer.schedule(on: loop, after: Self.milliseconds(handshakeTimeout)) { [weak self, handshakeTimeout] in
            guard let self, next != nil else { return }
            failAfterCompletion(.timedOut("\(contexts.handshake.name) key management: the rekeying handshake did not finish within \(handshakeTimeout)"))
        }
    }

    /// Marks a session this method exported, so that `resumptionSession` can hold a TLS session or
    /// one of these and each stack takes only its own.
    static let exportedSessionPrefix = Array("taps-dtls-chunk-ticket/1\n".utf8)

    /// CM: the newest session the peer gave this client, for `SecurityParameters.resumptionSession`
    /// of a later Preconnection; nil on the server, or before a ticket arrived. DTLS method only:
    /// the TLS method's sessions stay in the session cache.
    func exportSession() throws(TransportError) -> [UInt8]? {
        guard contexts.handshake == .dtls13 else {
            throw .notSupported("TLS 1.3 key management keeps its sessions in the session cache (SecurityParameters.sessionCache) and does not export them as bytes")
        }
        guard let sessionKey else { return nil }
        keepSessions()
        return contexts.sessionCache.encodedSession(for: sessionKey).map { Self.exportedSessionPrefix + $0 }
    }

    /// Keeps the tickets the server sent for the next association to the peer (newest wins).
    private func keepSessions() {
        guard let sessionKey else { return }
        for connection in [current, next, retiring].compactMap({ $0 }) {
            for session in connection.takeNewSessions() {
                contexts.sessionCache.storeEncoded(session.bytes, lifetimeSeconds: session.lifetimeSeconds, for: sessionKey)
            }
        }
    }

    // MARK: Keys and failures

    private func installReceiveKeys(of connection: KeyManagementConnection, suite: DTLSChunkCipherSuite) throws(TransportError) {
        let keys = try write(connection.peerWrite)
        try association?.establishReceiveKeys(keys.primary, suite: suite, for: connection.primaryContext)
        try association?.establishReceiveKeys(keys.restart, suite: suite, for: connection.restartContext)
    }

    /// Primary send keys go in use at once; restart ones wait for a restart.
    private func installSendKeys(of connection: KeyManagementConnection, suite: DTLSChunkCipherSuite) throws(TransportError) {
        let keys = try write(connection.ownWrite)
        try association?.establishSendKeys(keys.primary, suite: suite, for: connection.primaryContext)
        try association?.establishSendKeys(keys.restart, suite: suite, for: connection.restartContext)
    }

    private func write(_ keys: (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial)?) throws(TransportError) -> (primary: DTLSChunkKeyMaterial, restart: DTLSChunkKeyMaterial) {
        guard let keys else { throw .handshakeFailed("\(contexts.handshake.name) key management: no keys exported") }
        return keys
    }

    /// The identity `connection`'s peer certificate names, which must be the association's once it
    /// has one: a rekey or a restart's handshake may renew the certificate, not change who it names.
    private func requireSamePeer(in connection: KeyManagementConnection) throws(TransportError) -> CertificateIdentity? {
        let shown = connection.peerCertificateDER.flatMap(CertificateIdentity.init(certificateDER:))
        guard let peerIdentity else { return shown }
        guard shown == peerIdentity else {
            throw .certificateRejected("\(contexts.handshake.name) key management: the peer's certificate names another identity than before, which ends the association (draft-westerlund \"Authentication and Policy Decisions\", draft-porfiri \"Authentication and Identity\")")
        }
        return peerIdentity
    }

    private func failAfterCompletion(_ error: TransportError) {
        guard !failed else { return }
        failed = true
        if next != nil { association?.path.metrics?.handshakesFailed.increment() }  // a rekey's handshake
        for connection in [current, next, retiring].compactMap({ $0 }) { connection.stopTimer() }
        for timer in [ageTimer, drainTimer, rekeyDeadline] { timer?.close() }
        onFailure?(error)
    }

    private static func milliseconds(_ duration: Duration) -> UInt64 { UInt64(max(1, duration.milliseconds)) }
}
