internal import CUsrSCTP
import Glibc

/// One SCTP association (RFC 9260) over a datagram path, on usrsctp. Each bidirectional stream is an
/// `SCTPStreamLayer`, which is what a Connection sits on; a connection group is the association
/// (RFC 9622 section 7.4, multistreaming). Messages keep their boundaries; large ones go to usrsctp in
/// pieces with explicit end-of-record. Loop thread only.
final class SCTPAssociation: SCTPPathOwner {
    enum Role {
        case client(localPort: UInt16, remotePort: UInt16)
        case server
    }

    /// `confirmingKeys`: up in SCTP, waiting for the peer's first protected packet (DTLS chunk).
    private enum State { case idle, connecting, confirmingKeys, established, shuttingDown, closed, failed }

    let path: SCTPPath
    let options: SCTPOptions
    /// Tells this association's TLS sessions from others' (a TLS/SCTP server's ticket scope, see
    /// `TLSContext.scopeTicketsToAssociations`); random, so no other association shares it, and
    /// made when a TLS stream first asks.
    private(set) lazy var sessionScope: [UInt8] = (0..<16).map { _ in UInt8.random(in: .min ... .max) }
    private let role: Role
    private var socket: SCTPSocket?
    private var state: State = .idle
    private var streams: [UInt16: SCTPStreamLayer] = [:]
    /// Streams whose connection is gone; their ids are not reused within the association.
    private var retiredStreams: Set<UInt16> = []
    /// Clients open even stream ids and servers odd ones, so both ends can open streams without
    /// colliding; stream 0 is the client's first connection.
    private var nextStreamID: UInt16
    private(set) var outboundStreams: UInt16 = 0
    private(set) var inboundStreams: UInt16 = 0
    private var sending = SCTPSendQueue()
    /// connPriority of streams that set one (RFC 9622 section 8.1.2); the others have the default.
    private var streamPriorities: [UInt16: Int] = [:]
    private var partialMessages: [UInt16: [UInt8]] = [:]
    /// Key management messages (PPID 4242) being joined, by stream; they never reach a connection.
    private var partialKeyManagementMessages: [UInt16: [UInt8]] = [:]
    /// What every association reads from usrsctp into: they all run on the SCTP loop, and each read
    /// is copied out (into its message) or handled before the next, so one buffer serves them all.
    /// A zero-filled buffer per association kept 256 KB of each idle one resident. SCTP loop only.
    nonisolated(unsafe) private static let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    private var eventsScheduled = false
    private var pausedStreams: Set<UInt16> = []
    private var closeTimer: UVTimer?
    private let loop: EventLoop

    /// A stream the peer opened, with the first message (or first piece of it) that arrived on it;
    /// the listener makes it a Connection before that message is delivered.
    var onIncomingStream: ((SCTPStreamLayer, _ firstBytes: [UInt8]) -> Void)?

    init(path: SCTPPath, role: Role, options: SCTPOptions, loop: EventLoop) {
        self.path = path
        self.role = role
        self.options = options
        self.loop = loop
        if case .server = role { nextStreamID = 1 } else { nextStreamID = 0 }
        path.owner = self
        path.chunkFilter?.onFailure = { [weak self] error in self?.fail(error) }
    }

    /// The DTLS chunk is in use and nothing from the peer has authenticated yet.
    private var needsKeyConfirmation: Bool {
        guard let filter = path.chunkFilter, filter.status == .agreed else { return false }
        return !filter.peerAuthenticated
    }

    /// The DTLS chunk's handshake method, while it runs and after.
    private(set) var keyManagement: HandshakeKeyManagement?

    /// After COMM_UP: a handshake method first, or KMId 0's key confirmation, or nothing.
    private func secureOrEstablish() {
        if let filter = path.chunkFilter, filter.status == .agreed, let agreement = filter.agreement, let contexts = filter.handshake(for: agreement.method) {
            // A restarting initiator resumes under its saved restart context.
            let restart = filter.restartedUnder.map { context in
                (context, filter.restartContext.flatMap { CertificateIdentity(certificateDER: $0.peerCertificateDER) })
            }
            startKeyManagement(agreement, contexts: contexts, restart: restart)
        } else if needsKeyConfirmation {
            confirmKeys()
        } else {
            becomeEstablished()
        }
    }

    /// Runs a handshake key management method (DTLS 1.3 or TLS 1.3); the streams wait until it has
    /// installed the keys both ways.
    /// After a protected restart (`restart`: the restart context in use and the peer's identity)
    /// they need not wait.
    private func startKeyManagement(_ agreement: DTLSChunkAgreement, contexts: KeyManagementContexts?,
                                    restart: (context: DTLSKeyContextID, peerIdentity: CertificateIdentity?)? = nil) {
        guard let contexts else { return fail(.handshakeFailed("\(agreement.method) key management was agreed but is not configured")) }
        do throws(TransportError) {
            let initiated = if case .client = role { true } else { false }
            let method = try HandshakeKeyManagement(contexts: contexts, agreement: agreement, initiated: initiated, association: self,
                                                    peer: path.lower.remoteAddress.map { "\($0)" }, loop: loop,
                                                    handshakeTimeout: options.dtlsChunkKeyConfirmationTimeout, restart: restart)
            keyManagement = method
            if state != .established { state = .confirmingKeys }
            let me = LoopBound(self)
            method.onFailure = { error in me.value?.fail(error) }
            method.onKeysUpdated = { byPeer in me.value?.keysUpdated(byPeer: byPeer) }
            method.onCompletion = { [loop] error in
                loop.execute {
                    guard let association = me.value else { return }
                    if let error { return association.fail(error) }
                    // After a restart, the restart context's suite until the new handshake's.
                    if let suite = association.keyManagement?.cipherSuite { association.path.chunkFilter?.negotiatedSuite = suite }
                    association.path.chunkFilter?.peerCertificateSubject = association.keyManagement?.peerCertificateSubject
                    association.path.chunkFilter?.resumed = association.keyManagement?.resumed ?? false
                    association.keysConfirmed()
                }
            }
            armEstablishmentDeadline()
            method.start()
        } catch {
            fail(error)
        }
    }

    /// The end that stayed, when the peer restarted under a restart context (the filter switched
    /// the keys as the COOKIE ECHO went in): the old key management connections are dropped
    /// without close_notify, and a fresh one replaces the restart context.
    private func keyManagementAfterRestart() {
        guard let filter = path.chunkFilter, let context = filter.restartedUnder, let old = keyManagement, let agreement = filter.agreement else { return }
        old.abandon()
        partialKeyManagementMessages.removeAll()
        startKeyManagement(agreement, contexts: old.contexts, restart: (context, old.peerIdentity))
    }

    /// The restart context this end would restart the association with, as bytes for
    /// `SecurityParameters.dtlsChunkRestartContext` (a handshake method).
    func exportRestartContext() throws(TransportError) -> [UInt8] {
        let keyManagement = try requireKeyManagement(
            plain: "this SCTP association has no DTLS chunk, so no restart key context",
            preShared: "pre-shared DTLS chunk parameters (KMId 0) have no restart context to export; the key file holds it")
        guard state == .established, let context = keyManagement.restartContext() else {
            throw .connectionClosed("the association has no restart key context yet: the key management has not made one (after a restart, until its new handshake)")
        }
        return context.bytes
    }

    /// KU on the DTLS chunk: a new key management connection replaces the keys (a handshake method).
    func updateKeys() throws(TransportError) {
        let keyManagement = try requireKeyManagement(
            plain: "this SCTP association has no security protocol whose keys could be updated",
            preShared: "pre-shared DTLS chunk parameters (KMId 0) are not rekeyed in band; install new keys through the abstract API")
        guard keyManagement.completed, state == .established else { throw .connectionClosed("the association is not established; its keys cannot be updated") }
        keyManagement.requestRekey()
    }

    /// CM on the DTLS chunk: the DTLS 1.3 key management's newest session from this peer (the TLS
    /// 1.3 method's stay in the session cache).
    func exportSession() throws(TransportError) -> [UInt8]? {
        try requireKeyManagement(plain: "this SCTP association has no security protocol with sessions to export",
                                 preShared: "pre-shared DTLS chunk parameters (KMId 0) have no sessions to export").exportSession()
    }

    /// SSKE on the DTLS chunk, from the handshake key management (`HandshakeKeyManagement`).
    func exportKeyingMaterial(label: String, context: [UInt8]?, length: Int) throws(TransportError) -> [UInt8] {
        let keyManagement = try requireKeyManagement(
            plain: "this SCTP association has no security protocol to export keying material from",
            preShared: "pre-shared DTLS chunk parameters (KMId 0) have no handshake to export keying material from")
        guard state == .established else { throw .connectionClosed("the association is not established; nothing to export keying material from") }
        return try keyManagement.exportKeyingMaterial(label: label, context: context, length: length)
    }

    /// The handshake key management that KU, SSKE and CM need; `notSupported` with `plain` on an
    /// association without the DTLS chunk, with `preShared` on one keyed by pre-shared parameters.
    private func requireKeyManagement(plain: String, preShared: String) throws(TransportError) -> HandshakeKeyManagement {
        guard let keyManagement else { throw .notSupported(path.chunkFilter == nil ? plain : preShared) }
        return keyManagement
    }

    /// The identity (and trust) the next key management connection uses, as when a certificate is
    /// renewed during a long association.
    func replaceKeyManagementContexts(_ contexts: KeyManagementContexts) {
        keyManagement?.contexts = contexts
    }

    /// The DTLS chunk's keys were replaced: every connection of the association hears of it.
    private func keysUpdated(byPeer: Bool) {
        for stream in streams.values { stream.associationDidUpdateKeys(byPeer: byPeer) }
    }

    /// Asks usrsctp for a HEARTBEAT now, so that the peer answers.
    func requestHeartbeat() { socket?.requestHeartbeat() }

    /// The most bytes of a message one packet carries before SCTP fragments it.
    var fragmentationPoint: Int? { socket?.fragmentationPoint }

    /// Key management's rekey count and current DCI, for the status.
    var keyManagementProgress: (rekeys: Int, connectionIndex: UInt64)? {
        keyManagement.map { ($0.rekeys, $0.connectionIndex) }
    }

    /// Runs `body` (on the loop) once a packet of the peer has authenticated with our keys.
    func whenPeerAuthenticates(_ body: @escaping () -> Void) {
        guard let filter = path.chunkFilter else { return }
        nonisolated(unsafe) let body = body  // made and run on this loop
        if filter.peerAuthenticated { return loop.execute { body() } }
        filter.onPeerAuthenticated = { [loop] in loop.execute { body() } }
    }

    /// A handshake method that has not finished in time fails the association.
    private func armEstablishmentDeadline() {
        let timeout = options.dtlsChunkKeyConfirmationTimeout
        confirmationTimer = UVTimer.schedule(on: loop, after: UInt64(max(1, timeout.milliseconds))) { [weak self] in
            guard let self, state == .confirmingKeys else { return }
            fail(.timedOut("the DTLS chunk's key management did not finish within \(timeout)"))
        }
    }

    private var confirmationTimer: UVTimer?

    /// Waits, asking with HEARTBEATs, for a packet of the peer that opens with our keys: only then
    /// do both ends' keys agree, and the streams become ready. Our interpretation for KMId 0, which
    /// has no handshake to show wrong keys: without it, ends with different keys would each see the
    /// other ready and lose everything sent until SCTP gave up.
    private func confirmKeys() {
        state = .confirmingKeys
        whenPeerAuthenticates { [weak self] in self?.keysConfirmed() }
        socket?.requestHeartbeat()
        let deadline = loop.nowMilliseconds + UInt64(max(1, options.dtlsChunkKeyConfirmationTimeout.milliseconds))
        let timer = UVTimer(loop: loop)
        confirmationTimer = timer
        timer.start(after: 200, repeat: 200) { [weak self] in
            guard let self, state == .confirmingKeys else { return }
            guard loop.nowMilliseconds < deadline else {
                let failures = path.chunkFilter?.protection.counters.aeadFailures ?? 0
                fail(.handshakeFailed("no packet from the peer authenticated with the DTLS chunk keys within \(options.dtlsChunkKeyConfirmationTimeout) (\(failures) failed to): the two ends' keys differ"))
                return
            }
            socket?.requestHeartbeat()
        }
    }

    private func keysConfirmed() {
        confirmationTimer?.close()
        confirmationTimer = nil
        guard state == .confirmingKeys else { return }
        becomeEstablished()
    }

    /// With the DTLS chunk, the association is ready for the application only once its keys are in
    /// place both ways and protection is required (or, in loose mode, plain SCTP was agreed).
    private func chunkProtectionIsReady() -> Bool {
        guard let filter = path.chunkFilter else { return true }
        if case .failure(let error) = filter.readiness {
            fail(error)
            return false
        }
        return true
    }

    /// Server side: the socket usrsctp_accept returned, already established. Its stream 0 is the
    /// client's first connection.
    convenience init(accepted socket: SCTPSocket, path: SCTPPath, options: SCTPOptions, loop: EventLoop) {
        self.init(path: path, role: .server, options: options, loop: loop)
        self.socket = socket
        installUpcall(on: socket)
        readStreamCounts()
        state = .connecting
        applyPathParameters()
        streams[0] = SCTPStreamLayer(association: self, streamID: 0)
        guard chunkProtectionIsReady() else { return }
        secureOrEstablish()
        // Data may already wait in the socket.
        scheduleEvents()
    }

    /// Server: the stream the client's initiating connection uses.
    var firstStream: SCTPStreamLayer? { streams[0] }

    // MARK: Streams

    /// The stream a new connection of this association uses: the next unused outgoing stream id.
    func openStream() throws(TransportError) -> SCTPStreamLayer {
        guard state == .idle || state == .connecting || state == .confirmingKeys || state == .established else {
            throw .connectionClosed("the SCTP association has ended; no new stream can be opened")
        }
        while streams[nextStreamID] != nil || retiredStreams.contains(nextStreamID) { nextStreamID &+= 2 }
        let limit = state == .established ? outboundStreams : options.streams
        guard nextStreamID < limit else {
            throw .notSupported("the SCTP association has no free outgoing stream (\(limit) negotiated); raise sctp.streams")
        }
        let stream = SCTPStreamLayer(association: self, streamID: nextStreamID)
        streams[nextStreamID] = stream
        nextStreamID &+= 2
        return stream
    }

    /// A stream layer asks for the association to come up (its `start`).
    func streamStarted(_ stream: SCTPStreamLayer) {
        switch state {
        case .idle:
            state = .connecting
            path.start()
        case .established:
            stream.associationDidBecomeReady()
        case .connecting, .confirmingKeys: break
        case .shuttingDown, .closed, .failed:
            // A stream opened just before the association began to close would otherwise wait forever.
            stream.associationDidFail(.connectionClosed("the SCTP association has ended or is shutting down"))
        }
    }

    // MARK: Path events

    func pathDidBecomeReady() {
        guard case .client(let localPort, let remotePort) = role, state == .connecting, let handle = path.handle else { return }
        do throws(TransportError) {
            let socket = try SCTPSocket(streams: options.streams, options: options)
            self.socket = socket
            installUpcall(on: socket)
            try socket.bind(handle, port: localPort)
            try socket.connect(handle, port: remotePort)
        } catch {
            fail(error)
        }
    }

    func pathDidFail(_ error: TransportError) { fail(error) }

    func pathDidReportSoftError(_ error: TransportError) {
        // ICMP port unreachable while the INIT is unanswered: nobody listens there.
        if state == .connecting && error.code == .connectionRefused {
            fail(.connectionRefused("no SCTP-over-UDP endpoint answers at \(path.lower.remoteAddress.map { "\($0)" } ?? "the peer") (ICMP port unreachable)"),
                 associationGone: true)
            return
        }
        streams.values.forEach { $0.delegate?.layerDidReportSoftError(error) }
    }

    // MARK: usrsctp events

    private func installUpcall(on socket: SCTPSocket) {
        socket.setUpcall({ _, argument, _ in
            guard let argument else { return }
            // usrsctp may hold its locks here: the work runs right after, on the loop.
            Unmanaged<SCTPAssociation>.fromOpaque(argument).takeUnretainedValue().scheduleEvents()
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Coalesces upcalls into one pass over the socket.
    func scheduleEvents() {
        guard !eventsScheduled else { return }
        eventsScheduled = true
        let me = LoopBound(self)
        loop.execute { me.value?.processEvents() }
    }

    private func processEvents() {
        eventsScheduled = false
        guard socket != nil else { return }
        if pausedStreams.isEmpty { readAvailable() }
        // Room in usrsctp's send buffer may have opened; what the application queues in this turn
        // goes along in the same flush.
        if !sending.isEmpty { scheduleFlush() }
    }

    private func readAvailable() {
        while let socket, pausedStreams.isEmpty {
            var info = sctp_rcvinfo()
            var infoLength = socklen_t(MemoryLayout<sctp_rcvinfo>.size)
            var infoType = UInt32(0)
            var flags = Int32(0)
            let buffer = Self.receiveBuffer
            let count = usrsctp_recvv(socket.raw, buffer.baseAddress, buffer.count, nil, nil, &info, &infoLength, &infoType, &flags)
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                fail(.connectionReset("SCTP receive failed: \(String(cString: strerror(errno)))"))
                return
            }
            if count == 0 {
                // The peer's SHUTDOWN: nothing more will arrive on any stream.
                peerShutDown()
                return
            }
            let isComplete = flags & Int32(MSG_EOR) != 0
            if flags & Int32(MSG_NOTIFICATION) != 0 {
                handleNotification(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                continue
            }
            guard infoType == UInt32(SCTP_RECVV_RCVINFO) else { continue }
            receive(count: count, on: info.rcv_sid, complete: isComplete, info: info)
        }
    }

    /// The first `count` bytes of the receive buffer: what the last read put there.
    private static func received(_ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: receiveBuffer[..<count])
    }

    /// usrsctp hands a large message over in pieces (at most the receive buffer each). They are
    /// joined into the whole message, or, when the stream's connection asked for partial delivery,
    /// handed up as parts of at least its minimum as they come.
    private func receive(count: Int, on streamID: UInt16, complete: Bool, info: sctp_rcvinfo) {
        if let filter = path.chunkFilter, UInt32(bigEndian: info.rcv_ppid) == DTLSChunkPathFilter.keyManagementPPID {
            receiveKeyManagement(count: count, on: streamID, complete: complete, filter: filter)
            return
        }
        // The common case, a message in one piece with nothing buffered, is one copy.
        var message = partialMessages.isEmpty ? [] : partialMessages.removeValue(forKey: streamID) ?? []
        // A part buffered here stays under the limit too: in partial delivery it is at most the
        // connection's minimum plus one piece.
        guard message.count + count <= options.maximumReceiveMessageSize else {
            fail(.protocolViolation("the peer sent a message larger than \(options.maximumReceiveMessageSize) bytes on stream \(streamID) (sctp.maximumReceiveMessageSize)"))
            return
        }
        if message.isEmpty {
            message = Array(Self.received(count))
        } else {
            message.append(contentsOf: Self.received(count))
        }
        let stream = stream(for: streamID, firstBytes: message)
        let partMinimum = stream?.partialDeliveryMinimum
        guard complete || partMinimum.map({ message.count >= $0 }) == true else {
            partialMessages[streamID] = message
            return
        }
        var properties = MessageProperties()
        properties.ordered = info.rcv_flags & UInt16(SCTP_UNORDERED) == 0
        properties.sctpPayloadProtocolIdentifier = UInt32(bigEndian: info.rcv_ppid)
        stream?.deliver(message, properties: properties, isComplete: complete)
    }

    /// With the DTLS chunk, a message on PPID 4242 belongs to key management (draft "SCTP Payload
    /// Protocol Identifier"): it goes to the filter whole and never to the application, not even as
    /// the first message of a new stream.
    private func receiveKeyManagement(count: Int, on streamID: UInt16, complete: Bool, filter: DTLSChunkPathFilter) {
        var message = partialKeyManagementMessages.removeValue(forKey: streamID) ?? []
        guard message.count + count <= DTLSChunkPathFilter.maximumKeyManagementMessage else {
            fail(.protocolViolation("the peer sent a DTLS key management message larger than \(DTLSChunkPathFilter.maximumKeyManagementMessage) bytes"))
            return
        }
        message.append(contentsOf: Self.received(count))
        guard complete else {
            partialKeyManagementMessages[streamID] = message
            return
        }
        if let keyManagement { keyManagement.receive(message) } else { filter.keyManagementMessage(message, on: streamID) }
    }

    /// The stream for an incoming message; the peer's first message (or part of one) on a new stream opens it.
    private func stream(for streamID: UInt16, firstBytes: [UInt8]) -> SCTPStreamLayer? {
        if let stream = streams[streamID] { return stream }
        guard !retiredStreams.contains(streamID), let onIncomingStream else { return nil }
        let stream = SCTPStreamLayer(association: self, streamID: streamID)
        streams[streamID] = stream
        onIncomingStream(stream, firstBytes)
        return stream
    }

    private func handleNotification(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= MemoryLayout<sctp_tlv>.size else { return }
        let header = bytes.loadUnaligned(as: sctp_tlv.self)
        switch Int32(header.sn_type) {
        case SCTP_ASSOC_CHANGE:
            guard bytes.count >= MemoryLayout<sctp_assoc_change>.size else { return }
            let change = bytes.loadUnaligned(as: sctp_assoc_change.self)
            // On a failure, usrsctp appends the peer's ABORT chunk, if there was one (RFC 6458 6.1.1);
            // a loss at this end (retransmission limit, a violation it aborted for) comes without one.
            let offset = MemoryLayout<sctp_assoc_change>.size
            let peerAborted = bytes.count >= offset + 4 && bytes[offset] == SCTPHandshakeChunks.abortType
            associationChanged(Int32(change.sac_state), error: change.sac_error,
                               abortCauses: peerAborted ? SCTPHandshakeChunks.abortCauses(bytes, chunkAt: offset) : nil,
                               abortReason: peerAborted ? SCTPHandshakeChunks.abortReason(bytes, chunkAt: offset) : nil)
        case SCTP_PEER_ADDR_CHANGE:
            streams.values.forEach { $0.delegate?.layerDidChangePath() }
        case SCTP_SHUTDOWN_EVENT:
            peerShutDown()
        case SCTP_STREAM_RESET_EVENT:
            streamsReset(bytes)
        case SCTP_STREAM_CHANGE_EVENT:
            readStreamCounts()
        default:
            break
        }
    }

    /// `abortCauses`: the error causes of the peer's ABORT, nil when the peer sent none;
    /// `abortReason`: the text of its User-Initiated Abort cause.
    private func associationChanged(_ change: Int32, error: UInt16, abortCauses: [UInt16]?, abortReason: String? = nil) {
        // The DTLS chunk's negotiation failed at the peer (error causes 100-103).
        if change == SCTP_COMM_LOST || change == SCTP_CANT_STR_ASSOC,
           let refusal = abortCauses?.lazy.compactMap(DTLSChunkNegotiationFailure.init(causeCode:)).first {
            fail(.connectionRefused("the peer aborted the association: \(refusal.peerReason)"), associationGone: true)
            return
        }
        switch change {
        case SCTP_COMM_UP:
            guard state == .connecting, chunkProtectionIsReady() else { return }
            readStreamCounts()
            applyPathParameters()
            secureOrEstablish()
        case SCTP_COMM_LOST:
            if let abortReason {
                fail(.connectionReset("the peer aborted the SCTP association: \(abortReason)"), associationGone: true)
            } else if let abortCauses {
                let causes = abortCauses.map(SCTPHandshakeChunks.causeName).joined(separator: ", ")
                fail(.connectionReset("the peer aborted the SCTP association" + (causes.isEmpty ? "" : " (\(causes))")), associationGone: true)
            } else {
                fail(.connectionReset("the SCTP association was lost at this end: the peer stopped acknowledging (SCTP's retransmission limit) or sent what SCTP could not accept"),
                     associationGone: true)
            }
        case SCTP_CANT_STR_ASSOC:
            fail(.connectionRefused("the SCTP association could not be established (no answer to INIT)"), associationGone: true)
        case SCTP_RESTART:
            keyManagementAfterRestart()
            streams.values.forEach { $0.delegate?.layerDidReportSoftError(.connectionReset("the peer restarted the SCTP association")) }
        case SCTP_SHUTDOWN_COMP:
            finishClose()
        default:
            break
        }
    }

    private func becomeEstablished() {
        state = .established
        streamPriorities.keys.forEach(applyPriority(on:))
        streams.values.forEach { $0.associationDidBecomeReady() }
        scheduleEvents()  // data may already wait in the socket
        if !sending.isEmpty { scheduleFlush() }
    }

    private func streamsReset(_ bytes: UnsafeRawBufferPointer) {
        let headerSize = MemoryLayout<sctp_stream_reset_event>.size
        guard bytes.count >= headerSize else { return }
        let event = bytes.loadUnaligned(as: sctp_stream_reset_event.self)
        // Only the peer resetting its outgoing streams (our incoming ones) ends a stream here.
        guard event.strreset_flags & UInt16(SCTP_STREAM_RESET_INCOMING_SSN) != 0,
              event.strreset_flags & UInt16(SCTP_STREAM_RESET_DENIED | SCTP_STREAM_RESET_FAILED) == 0 else { return }
        let count = (min(Int(event.strreset_length), bytes.count) - headerSize) / 2
        let ids = count > 0 ? (0..<count).map { bytes.loadUnaligned(fromByteOffset: headerSize + 2 * $0, as: UInt16.self) } : Array(streams.keys)
        for id in ids { streams[id]?.peerFinished() }
    }

    private func readStreamCounts() {
        var status = sctp_status()
        if socket?.get(SCTP_STATUS, &status) == true {
            outboundStreams = status.sstat_outstrms
            inboundStreams = status.sstat_instrms
        }
    }

    /// Again on the association itself: the socket's setting covers associations created after it.
    private func applyPathParameters() {
        socket?.setPathParameters(options)
    }

    // MARK: Sending

    func send(_ bytes: [UInt8], on streamID: UInt16, properties: MessageProperties, completion: ((TransportError?) -> Void)?) {
        guard state == .established || state == .connecting || state == .confirmingKeys else {
            completion?(.connectionClosed("the SCTP association has ended"))
            return
        }
        // Completes when usrsctp takes the message (the Connection paces its sender on completions).
        sending.enqueue(.message(SCTPSendQueue.Message(streamID: streamID, streamPriority: streamPriorities[streamID] ?? Self.defaultPriority,
                                                       bytes: bytes, properties: properties, completion: completion)))
        if state == .established { scheduleFlush() }
    }

    /// A key management message (PPID 4242, ordered and reliable) on `streamID`, for the DTLS
    /// chunk's key management methods; applications cannot send on this PPID.
    func sendKeyManagement(_ bytes: [UInt8], on streamID: UInt16, completion: ((TransportError?) -> Void)? = nil) {
        guard state == .established || state == .confirmingKeys else {
            completion?(.connectionClosed("the SCTP association is not up"))
            return
        }
        var properties = MessageProperties()
        properties.sctpPayloadProtocolIdentifier = DTLSChunkPathFilter.keyManagementPPID
        // Key management goes before every application message still in our queue.
        sending.enqueue(.message(SCTPSendQueue.Message(streamID: streamID, streamPriority: SCTPSendQueue.urgentPriority,
                                                       bytes: bytes, properties: properties, completion: completion)))
        scheduleFlush()
    }

    /// The stream of rekeying handshakes: the highest both directions have, first in usrsctp's
    /// scheduler, so that a handshake does not wait behind application data usrsctp already holds
    /// for stream 0 (draft-westerlund, "DTLS Key-Management Messages": any stream, else 0).
    var rekeyStreamID: UInt16 {
        let shared = min(outboundStreams, inboundStreams)
        guard shared > 1, let socket else { return 0 }
        let streamID = shared - 1
        if !rekeyStreamScheduled {
            rekeyStreamScheduled = true
            try? socket.set(SCTP_SS_VALUE, sctp_stream_value(assoc_id: 0, stream_id: streamID, stream_value: 0))
        }
        return streamID
    }

    private var rekeyStreamScheduled = false

    // MARK: Priorities

    private static let defaultPriority = TransportProperties().connPriority

    /// A stream's connPriority becomes its value in usrsctp's priority scheduler (SCTP_SS_PRIORITY:
    /// the lowest value is served first, RFC 8260 section 3.2) and orders messages still waiting in
    /// our queue.
    func setPriority(_ priority: Int, on streamID: UInt16) {
        streamPriorities[streamID] = priority
        applyPriority(on: streamID)
    }

    /// The connPriority a stream set, if it set one.
    func priority(of streamID: UInt16) -> Int? { streamPriorities[streamID] }

    private func applyPriority(on streamID: UInt16) {
        guard let socket, state == .established, let priority = streamPriorities[streamID] else { return }
        try? socket.set(SCTP_SS_VALUE, sctp_stream_value(assoc_id: 0, stream_id: streamID, stream_value: UInt16(clamping: priority)))
    }

    private var flushScheduled = false

    /// Hands the queue to usrsctp once per turn of the loop, so messages sent in one turn share packets.
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let me = LoopBound(self)
        loop.executeAtEndOfTurn {
            guard let association = me.value else { return }
            association.flushScheduled = false
            association.flushSends()
        }
    }

    private func flushSends() {
        // While the DTLS chunk's keys are confirmed only key management messages can be queued.
        guard let socket, state == .established || state == .shuttingDown || state == .confirmingKeys else { return }
        switch sending.flush(into: socket, packetCapacity: options.packetCapacity) {
        case .blocked, .drained: break
        case .failed(let error): fail(error)
        }
        if state == .shuttingDown, sending.isEmpty, !shutdownSent { sendShutdown() }
    }

    // MARK: Closing

    /// The stream's send side ends: a stream reset after its queued messages, or, for the last
    /// stream, the association's SHUTDOWN.
    func finishStream(_ streamID: UInt16, completion: @escaping (TransportError?) -> Void) {
        if !hasOpenStreams(besides: streamID) {
            // The last stream's close ends with the association's (RFC 9260 section 9.2): once the
            // SHUTDOWN exchange is done the peer has everything; a failure before that reaches
            // the closing connection as its error instead of going unreported.
            guard state == .established || state == .shuttingDown else {
                shutDown()
                completion(nil)
                return
            }
            shutdownWaiters.append(completion)
            shutDown()
            return
        }
        sending.enqueue(.reset(streamID))
        flushSends()
        completion(nil)
    }

    /// A connection aborted its stream (RFC 9623 section 5.3): with other streams open, its messages
    /// still queued here are dropped and the stream is reset; the last stream's abort is the
    /// association's ABORT.
    func abortStream(_ streamID: UInt16) {
        guard hasOpenStreams(besides: streamID), state == .established || state == .connecting || state == .confirmingKeys else {
            abort()
            return
        }
        sending.discard(streamID, error: .connectionClosed("the connection was aborted"))
        if state == .established {
            sending.enqueue(.reset(streamID))
            scheduleFlush()
        }
        streamClosed(streamID)
    }

    /// Whether a stream other than `streamID` still has its connection (closed ones leave `streams`).
    private func hasOpenStreams(besides streamID: UInt16) -> Bool {
        streams.keys.contains { $0 != streamID }
    }

    /// A stream's connection is gone. The last one takes the association with it.
    func streamClosed(_ streamID: UInt16) {
        guard streams.removeValue(forKey: streamID) != nil else { return }
        retiredStreams.insert(streamID)
        pausedStreams.remove(streamID)
        if streams.isEmpty { shutDown() }
    }

    private var shutdownSent = false
    private var keepAliveWhileClosing: SCTPAssociation?

    private var closeProgress: (outstanding: Int, since: ContinuousClock.Instant)?
    /// The last stream's close, completed when the association has closed or failed.
    private var shutdownWaiters: [(TransportError?) -> Void] = []

    /// Graceful close (RFC 9260 section 9.2): queued data first, then SHUTDOWN; the socket is released
    /// on SHUTDOWN COMPLETE. Draining takes as long as the path needs (a slow or lossy path must not
    /// cost data that `send` accepted); only an association that makes no progress for
    /// `SCTPOptions.closeStallLimit` is aborted, and SCTP's retransmission limits end one whose peer is gone.
    func shutDown() {
        switch state {
        case .established:
            state = .shuttingDown
            // The connections may be gone already; the association lives on until its queued
            // messages are out and the SHUTDOWN exchange is done.
            keepAliveWhileClosing = self
            flushSends()
            let timer = UVTimer(loop: loop)
            timer.start(after: 1_000, repeat: 1_000) { [weak self] in self?.checkCloseProgress() }
            closeTimer = timer
        case .idle, .connecting, .confirmingKeys:
            abort()
        default:
            break
        }
    }

    /// Progress is what the association still holds (our queue, usrsctp's unsent and unacknowledged
    /// chunks) going down.
    private func checkCloseProgress() {
        let outstanding = sending.count + (socket?.outstandingChunks ?? 0)
        let now = ContinuousClock.now
        if let last = closeProgress, outstanding >= last.outstanding {
            if now - last.since >= options.closeStallLimit {
                fail(.timedOut("the SCTP association's close made no progress for \(options.closeStallLimit): the peer took none of the data still queued"))
            }
        } else {
            closeProgress = (outstanding, now)
        }
    }

    private func sendShutdown() {
        shutdownSent = true
        if let socket, usrsctp_shutdown(socket.raw, Int32(SHUT_WR)) != 0 { finishClose() }
    }

    private func peerShutDown() {
        streams.values.forEach { $0.peerFinished() }
        if state == .established { shutDown() }
    }

    /// Ends the association at once with an ABORT chunk.
    func abort() {
        guard state != .closed && state != .failed else { return }
        state = .closed
        sending.failAll(.connectionClosed("the SCTP association was aborted"))
        socket?.close(abort: true)
        completeShutdownWaiters(.connectionClosed("the SCTP association was aborted"))
        release(notify: true)
    }

    private func finishClose() {
        guard state != .closed else { return }
        state = .closed
        sending.failAll(.connectionClosed("the SCTP association closed"))
        socket?.close()
        completeShutdownWaiters(nil)
        release(notify: true)
    }

    private func completeShutdownWaiters(_ error: TransportError?) {
        let waiters = shutdownWaiters
        shutdownWaiters = []
        waiters.forEach { $0(error) }
    }

    /// Ends the association with `error`. Unless it is already gone at the peer (`associationGone`:
    /// the peer aborted it, or it was lost), the peer gets an ABORT that says why.
    private func fail(_ error: TransportError, associationGone: Bool = false) {
        guard state != .closed && state != .failed else { return }
        state = .failed
        sending.failAll(error)
        let affected = Array(streams.values)
        if socket != nil && !associationGone { path.sendAbort(reason: error.message) }
        socket?.close(abort: true)
        affected.forEach { $0.associationDidFail(error) }
        completeShutdownWaiters(error)
        release(notify: false)
    }

    private var released = false

    private func release(notify: Bool) {
        guard !released else { return }
        released = true
        closeTimer?.close()
        closeTimer = nil
        confirmationTimer?.close()
        confirmationTimer = nil
        socket = nil
        defer { keepAliveWhileClosing = nil }
        path.close()
        if notify { streams.values.forEach { $0.associationDidClose() } }
    }

    // MARK: Flow control

    func setReading(_ enabled: Bool, on streamID: UInt16) {
        if enabled {
            pausedStreams.remove(streamID)
            if pausedStreams.isEmpty { scheduleEvents() }
        } else {
            pausedStreams.insert(streamID)
        }
    }
}
