/// An established connection (RFC 9622 sections 8 to 10): send and receive messages, watch events,
/// clone into the same group, close or abort.
///
/// A Connection is an actor that runs on its event loop, beside the protocol layers it owns, so a
/// caller already on that loop (e.g. a task with the loop as executor preference) pays no hop.
public actor Connection {
    /// The event loop the connection and its protocol layers run on.
    public nonisolated let loop: EventLoop
    /// The protocol stack racing chose.
    public nonisolated let stack: ProtocolStack
    /// The transport properties the connection was made with.
    public nonisolated let properties: TransportProperties
    /// The connection group (RFC 9622 section 7.4) this connection belongs to.
    public nonisolated let group: ConnectionGroup

    let layer: Layer
    private let bridge: LayerBridge
    private let framer: (any MessageFramer)?
    /// `framer != nil`, kept apart: testing the existential copies it through the runtime's value
    /// witnesses, on every read and send of the data path.
    private let isFramed: Bool
    private var framerBuffer = FramerBuffer()
    /// Where the connection is in its life (RFC 9622 section 8.1.11.1).
    public private(set) var state: State = .establishing {
        didSet { metrics.connectionStateChanged(from: oldValue, to: state) }
    }
    /// Where this connection's state, messages and bytes are counted.
    private let metrics: StackMetrics

    private var inbound = MessageQueue()
    /// `receive()` calls waiting for data, with their size limits.
    private var receivers: [WaitingReceive] = []
    /// A struct, not a tuple: tuple arrays go through the runtime's generic tuple witnesses on
    /// every append and removal, which showed in the per-read profile.
    private struct WaitingReceive {
        let continuation: UnsafeContinuation<Message, any Error>
        let minimum: Int
        let maximum: Int
        /// Finds the receive again when its task is cancelled.
        let id: UInt64
    }
    private var nextReceiveID: UInt64 = 0
    private var receiveFailure: TransportError?
    private var peerFinished = false
    private var readingPaused = false

    /// Bytes handed to the protocol stack whose write has not completed yet.
    private(set) var inflightBytes = 0
    private var sendWaiters: [UnsafeContinuation<Void, Never>] = []
    private var sentFinal = false
    private var nextMessageID: UInt64 = 1

    private var establishment: ((TransportError?) -> Void)?
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private var closeTimer: UVTimer?

    private var receiveMode: ReceiveMode = .pull
    private var subscribers: [UInt64: AsyncStream<ConnectionEvent>.Continuation] = [:]
    private var nextSubscriber: UInt64 = 0
    private var eventHandler: (@Sendable (ConnectionEvent) -> Void)?

    static let receiveHighWater = 4 * 1024 * 1024
    static let receiveLowWater = 1 * 1024 * 1024
    /// How much application data `send` lets wait before it suspends: the stack's
    /// `ProtocolStack.sendHighWater` (which has the measurements behind each value).
    nonisolated var sendHighWater: Int { stack.sendHighWater }

    /// RFC 9622 section 8.1.11.1.
    public enum State: Sendable, Hashable {
        /// Racing and the handshakes are under way; nothing can be sent yet.
        case establishing
        /// Ready: messages can be sent and received.
        case established
        /// Closing gracefully: queued messages still go out, nothing new is accepted.
        case closing
        /// Ended, gracefully or not; `closed` has been emitted.
        case closed
    }

    /// How received messages reach the application.
    public enum ReceiveMode: Sendable, Hashable {
        /// `receive()` / `messages` hand out queued messages (the default; flow control applies).
        case pull
        /// Every message is delivered as a `received` or `receivedPartial` event (RFC 9622 section
        /// 9.3.2) to the event handler and event streams, as it arrives.
        case events
    }

    /// The connection's loop, as the actor's executor.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Wraps a layer that is established or about to be; called on the loop thread.
    init(loop: EventLoop, stack: ProtocolStack, layer: Layer, properties: TransportProperties,
         framer: (any MessageFramer)?, group: ConnectionGroup, metrics: StackMetrics) {
        self.loop = loop
        self.metrics = metrics
        metrics.connectionsOpened.increment()
        metrics.connectionStateChanged(from: nil, to: .establishing)
        self.stack = stack
        self.layer = layer
        self.properties = properties
        self.framer = framer
        isFramed = framer != nil
        self.group = group
        connPriority = properties.connPriority
        let bridge = LayerBridge()
        self.bridge = bridge
        bridge.connection = self
        layer.delegate = bridge
        if properties.connPriority != TransportProperties().connPriority { layer.setPriority(properties.connPriority) }
    }

    /// Runs on the loop (an isolated deinit), where the layer must be released. An established
    /// connection dropped without `close()` closes gracefully (`LingeringClose`): what `send()`
    /// accepted is delivered, never silently dropped. One still establishing is aborted.
    isolated deinit {
        metrics.connectionStateChanged(from: state, to: nil)
        metrics.sendQueueBytes.decrement(by: Double(inflightBytes))
        switch state {
        case .closed: break
        case .establishing: layer.abort()
        case .established, .closing: LingeringClose.start(layer, loop: loop, sendSideEnded: sentFinal || state == .closing)
        }
    }

    // MARK: Establishment

    /// Marks a layer that racing or a listener already established as ready.
    func adoptEstablished() {
        state = .established
        emit(.ready)
    }

    /// Starts the layer (connect, handshake) and reports the outcome once; the report may come
    /// before `start` returns (UDP is ready at once).
    func start(onResult: @escaping (TransportError?) -> Void) {
        establishment = onResult
        layer.start()
    }

    /// Starts the layer and waits until it is ready.
    func establish() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            start { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
        }
    }

    /// Ends an establishment that is still under way with `error` (a listener's time limit).
    func failEstablishment(_ error: TransportError) {
        guard state == .establishing else { return }
        if stack.security != nil { metrics.handshakesFailed.increment() }  // the handshake stalled
        layerFailed(error)
    }

    fileprivate func layerReady() {
        guard state == .establishing else { return }
        adoptEstablished()
        let report = establishment
        establishment = nil
        report?(nil)
    }

    // MARK: Introspection

    /// RFC 9622 section 8.1.2: this connection's priority relative to the others of its group (lower
    /// is more important); starts as the Preconnection's `connPriority`. On SCTP it is the stream's
    /// priority in the association's scheduler. Changing it does not change the other connections'.
    public private(set) var connPriority: Int

    /// Sets `connPriority` (RFC 9622 section 8.1.2).
    public func setConnPriority(_ priority: Int) {
        connPriority = max(0, priority)
        layer.setPriority(connPriority)
    }

    /// What the security handshake negotiated (nil on stacks without security).
    public var securityDetails: SecurityDetails? { layer.securityDetails }
    /// The faults the Preconnection's ``Preconnection/lossyPath`` injected on this connection's
    /// path so far; nil when it has none.
    public var lossyPathCounters: LossyPath.Counters? {
        layer.layerChain.lazy.compactMap { ($0 as? LossyLayer)?.counters }.first
    }
    /// The local address in use, once known.
    public var localAddress: SocketAddress? { layer.localAddress }
    /// The peer's address in use, once known (on SCTP, the primary path's).
    public var remoteAddress: SocketAddress? { layer.remoteAddress }
    /// RFC 9622 section 8.1.11.2 / 8.1.11.3.
    public var canSend: Bool { state == .established && !sentFinal && properties.direction != .unidirectionalReceive }
    /// Whether messages can still arrive: the connection is not closed and the peer has not ended its side.
    public var canReceive: Bool { state != .closed && !peerFinished && properties.direction != .unidirectionalSend }
    /// RFC 9622 section 8.1.11.5: the largest message `send` accepts.
    public var sendMsgMaxLen: Int? {
        if isFramed, let framer { return framer.messageSizeLimit }
        return layer.maximumMessageSize
    }

    /// The socket's file descriptor on TCP-based stacks (for tests and diagnostics).
    var tcpFileDescriptor: Int32? {
        layer.layerChain.lazy.compactMap { ($0 as? TCPLayer)?.socket.fileDescriptor }.first
    }

    // MARK: Events

    /// A stream of this connection's events from now on (RFC 9622 events as an AsyncSequence).
    public func events() -> AsyncStream<ConnectionEvent> {
        let (stream, continuation) = AsyncStream<ConnectionEvent>.makeStream()
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        if state == .closed { continuation.finish() }
        return stream
    }

    private func unsubscribe(_ id: UInt64) { subscribers[id] = nil }

    /// Calls `handler` on the event loop for each event from now on (RFC 9622 event handlers).
    public func setEventHandler(_ handler: (@Sendable (ConnectionEvent) -> Void)?) {
        eventHandler = handler
    }

    /// Switches between `receive()` and event delivery of received messages; messages already
    /// queued are delivered as events when switching to `.events`.
    /// `minIncompleteLength` asks a message stack to deliver large messages in parts as they arrive,
    /// as for `receive`: `receivedPartial` events in event mode; in pull mode it asks before the next
    /// `receive` does.
    public func setReceiveMode(_ mode: ReceiveMode, minIncompleteLength: Int? = nil) {
        receiveMode = mode
        askForPartialDelivery(minIncompleteLength)
        guard mode == .events else { return }
        while let message = inbound.take(minIncompleteLength: 1, maxLength: .max, atEnd: true) {
            emit(message.isPart ? .receivedPartial(message) : .received(message))
        }
        resumeReadingIfDrained()
    }

    fileprivate func emit(_ event: ConnectionEvent) {
        eventHandler?(event)
        for continuation in subscribers.values { continuation.yield(event) }
        if case .closed = event {
            for continuation in subscribers.values { continuation.finish() }
            subscribers.removeAll()
        }
    }

    // MARK: Sending (RFC 9622 section 9.2)

    /// Sends one message. Returns once the message is handed to the protocol stack; waits first while
    /// more than `sendHighWater` bytes wait to be written (back-pressure: 512 KB on TLS/TCP, 128 KB
    /// on TLS/SCTP, 4 MB on the other stacks). A message whose `lifetime` passes while it waits is
    /// not sent and throws (and emits `expired`).
    public func send(_ content: [UInt8], context: MessageContext = MessageContext()) async throws {
        var context = context
        context.messageID = nextMessageID
        nextMessageID += 1
        try checkCanSend()
        if let refusal = layer.refusal(for: context.properties) {
            emit(.sendError(context, refusal))
            throw refusal
        }
        // RFC 9622 section 8.1.11.5: larger than the stack carries as one message.
        if let limit = sendMsgMaxLen, content.count > limit {
            let error = TransportError.messageTooLarge("\(content.count) bytes exceed sendMsgMaxLen (\(limit)) on \(stack.name)")
            emit(.sendError(context, error))
            throw error
        }
        let deadline = context.properties.lifetime.map { ContinuousClock.now + $0 }
        while inflightBytes > sendHighWater {
            if let deadline, ContinuousClock.now >= deadline { break }
            // A message with a lifetime must not wait past it: a timer wakes the waiters then.
            let expiry = deadline.map { deadline in
                // +1: libuv's clock has millisecond resolution; never wake before the deadline.
                UVTimer.schedule(on: loop, after: UInt64(max(0, (deadline - ContinuousClock.now).milliseconds) + 1)) { [weak self] in
                    self?.assumeIsolated { $0.wakeSendWaiters() }
                }
            }
            // Unsafe (no checking canary allocated per wait): the waiter is resumed exactly once,
            // by wakeSendWaiters or below, and this is the data path's per-message wait.
            await withUnsafeContinuation { continuation in
                // The expiry timer may already have fired before this body runs.
                let expired = deadline.map { ContinuousClock.now >= $0 } ?? false
                if inflightBytes <= sendHighWater || state == .closed || expired {
                    continuation.resume()
                } else {
                    sendWaiters.append(continuation)
                }
            }
            expiry?.close()
            try checkCanSend()
        }
        if let deadline, ContinuousClock.now >= deadline {
            emit(.expired(context))
            throw TransportError(.timedOut, "message \(context.messageID) expired: it waited behind queued data past its lifetime")
        }
        try hand(content, context: context)
    }

    /// Sends `text` as one message of its UTF-8 bytes; otherwise as `send(_:context:)` with bytes.
    public func send(_ text: String, context: MessageContext = MessageContext()) async throws {
        try await send(Array(text.utf8), context: context)
    }

    /// Frames (if a framer is set) and writes one message; closes the send side after a final one.
    private func hand(_ content: [UInt8], context: MessageContext) throws(TransportError) {
        metrics.messagesSent.increment()
        metrics.bytesSent.increment(by: content.count)
        if isFramed, let framer {
            var framed: [UInt8] = []
            var failure: TransportError?
            content.withUnsafeBytes { bytes in
                do throws(TransportError) { framed = try framer.frame(bytes, context: context) } catch { failure = error }
            }
            if let failure { throw failure }
            write(framed, context: context)
        } else {
            write(content, context: context)
        }
        if context.properties.final {
            sentFinal = true
            layer.finishWriting { _ in }
        }
    }

    private func checkCanSend() throws {
        guard properties.direction != .unidirectionalReceive else {
            throw TransportError.invalidArgument("this connection is receive-only (direction unidirectionalReceive)")
        }
        guard state == .established else { throw TransportError.connectionClosed("cannot send: the connection is \(state)") }
        guard !sentFinal else { throw TransportError.connectionClosed("cannot send after a message marked final") }
    }

    private func write(_ bytes: [UInt8], context: MessageContext) {
        let count = bytes.count
        inflightBytes += count
        metrics.sendQueueBytes.increment(by: Double(count))
        layer.write(bytes, properties: context.properties) { [weak self] error in
            self?.assumeOnLoop { $0.writeCompleted(count, context: context, error: error) }
        }
    }

    private func writeCompleted(_ count: Int, context: MessageContext, error: TransportError?) {
        inflightBytes -= count
        metrics.sendQueueBytes.decrement(by: Double(count))
        if let error {
            emit(.sendError(context, error))
        } else if eventHandler != nil || !subscribers.isEmpty {
            emit(.sent(context))
        }
        if inflightBytes <= sendHighWater { wakeSendWaiters() }
    }

    /// Lets every waiting `send` re-check whether it may go on (or has expired).
    private func wakeSendWaiters() {
        guard !sendWaiters.isEmpty else { return }
        let waiters = sendWaiters
        sendWaiters.removeAll()
        waiters.forEach { $0.resume() }
    }

    // MARK: Receiving (RFC 9622 section 9.3)

    /// Receives the next message (RFC 9622 section 9.3.1). On a byte stream without a framer, data
    /// arrives as partial messages (`isComplete == false`) of at least `minIncompleteLength` bytes
    /// (default 1) where available and at most `maxLength`; the stream's end is an empty, complete,
    /// final message. On a message stack (SCTP) messages arrive whole unless `minIncompleteLength` is
    /// given: then a large message is handed out in parts of at least that many bytes as it arrives
    /// (the last part has `isComplete`), without being buffered whole first; that holds for later
    /// messages too, until a `receive` asks otherwise. A part is at most `maxLength` in either case.
    /// Throws once the connection has ended and everything was received.
    public func receive(minIncompleteLength: Int? = nil, maxLength: Int = .max) async throws -> Message {
        askForPartialDelivery(minIncompleteLength)
        let minIncompleteLength = minIncompleteLength ?? 1
        if let message = inbound.take(minIncompleteLength: minIncompleteLength, maxLength: maxLength, atEnd: peerFinished || receiveFailure != nil) {
            resumeReadingIfDrained()
            return message
        }
        if let receiveFailure { throw receiveFailure }
        if state == .closed || (peerFinished && inbound.isEmpty) {
            throw TransportError.connectionClosed("the connection has ended; no more messages")
        }
        let id = nextReceiveID
        nextReceiveID &+= 1
        // A cancelled receive throws CancellationError at once and takes no message: one that
        // arrives later waits for the next receive.
        return try await withTaskCancellationHandler {
            // Unsafe (no checking canary allocated per wait): each receiver leaves `receivers` once,
            // resumed as it leaves, and this is the data path's per-read wait.
            try await withUnsafeThrowingContinuation { continuation in
                // Cancelled before this body ran: the handler below found nothing to cancel.
                guard !Task.isCancelled else { return continuation.resume(throwing: CancellationError()) }
                receivers.append(WaitingReceive(continuation: continuation, minimum: minIncompleteLength, maximum: maxLength, id: id))
                // Data or the end may have arrived before this body ran.
                deliverToReceivers()
            }
        } onCancel: {
            loop.execute { self.assumeIsolated { $0.cancelReceive(id) } }
        }
    }

    private func cancelReceive(_ id: UInt64) {
        guard let index = receivers.firstIndex(where: { $0.id == id }) else { return }
        receivers.remove(at: index).continuation.resume(throwing: CancellationError())
    }


    /// Received messages as an AsyncSequence, until the connection ends.
    public nonisolated var messages: AsyncThrowingStream<Message, any Error> {
        AsyncThrowingStream { [self] in
            do {
                return try await self.receive()
            } catch let error as TransportError where error.code == .connectionClosed {
                return nil
            }
        }
    }

    fileprivate func layerRead(_ bytes: UnsafeRawBufferPointer) {
        if isFramed {
            framerBuffer.append(bytes)
            parseFrames()
        } else {
            layerRead(owned: Array(bytes))
        }
    }

    fileprivate func layerRead(owned bytes: [UInt8]) {
        guard state != .closed else { return }
        if isFramed {
            bytes.withUnsafeBytes { framerBuffer.append($0) }
            parseFrames()
            return
        }
        enqueue(Message(bytes, context: receiveContext, isComplete: layer.service.keepsMessageBoundaries))
        deliverReceived()
    }

    /// A message, or a part of one, from a message layer, with the properties it arrived with (SCTP).
    fileprivate func layerRead(message: [UInt8], properties: MessageProperties, isComplete: Bool) {
        guard state != .closed else { return }
        var context = receiveContext
        context.properties = properties
        var received = Message(message, context: context, isComplete: isComplete)
        if isComplete && receivingInParts { received.isPart = true }  // the last part
        receivingInParts = !isComplete
        enqueue(received)
        deliverReceived()
    }

    /// Queues a received message for `receive()`, or emits it in event mode.
    private func enqueue(_ message: Message) {
        metrics.bytesReceived.increment(by: message.content.count)
        if message.isComplete { metrics.messagesReceived.increment() }  // whole, or the last part
        switch receiveMode {
        case .pull: inbound.append(message)
        case .events: emit(message.isPart ? .receivedPartial(message) : .received(message))
        }
    }

    /// The context received messages carry; the addresses are looked up once, not per read.
    private var cachedReceiveContext: MessageContext?
    private var receiveContext: MessageContext {
        if let cachedReceiveContext { return cachedReceiveContext }
        var context = MessageContext()
        context.remoteEndpoint = layer.remoteAddress
        context.localEndpoint = layer.localAddress
        cachedReceiveContext = context
        return context
    }

    private func parseFrames() {
        guard state != .closed, let framer else { return }
        let context = receiveContext
        do {
            while let message = try framer.parse(&framerBuffer) {
                enqueue(Message(message, context: context, isComplete: true))
            }
        } catch {
            receiveFailed(error)
            return
        }
        deliverReceived()
    }

    private func deliverReceived() {
        deliverToReceivers()
        if inbound.byteCount > Self.receiveHighWater && !readingPaused {
            readingPaused = true
            layer.setReading(false)
        }
    }

    fileprivate func layerEndOfStream() {
        // After abort() the layer's teardown may report an end (SCTP: the association's release);
        // nothing is received after an abort (RFC 9622 section 10).
        guard state != .closed else { return }
        peerFinished = true
        if isFramed && framerBuffer.count > 0 {
            receiveFailed(.protocolViolation("the stream ended inside a framed message (\(framerBuffer.count) bytes left)"))
            return
        }
        var context = MessageContext()
        context.properties.final = true
        enqueue(Message([], context: context, isComplete: true))
        deliverToReceivers()
        if state == .closing { finishClose() }
    }

    private func receiveFailed(_ error: TransportError) {
        receiveFailure = error
        emit(.receiveError(error))
        deliverToReceivers()
    }

    private func deliverToReceivers() {
        while !receivers.isEmpty {
            let receiver = receivers[0]
            let atEnd = peerFinished || receiveFailure != nil || state == .closed
            if let message = inbound.take(minIncompleteLength: receiver.minimum, maxLength: receiver.maximum, atEnd: atEnd) {
                receivers.removeFirst().continuation.resume(returning: message)
            } else if atEnd {
                let error = receiveFailure ?? .connectionClosed("the connection has ended; no more messages")
                receivers.removeFirst().continuation.resume(throwing: error)
            } else {
                break
            }
        }
        resumeReadingIfDrained()
    }

    /// Message layers deliver parts only when the application asked (a minIncompleteLength given).
    private var partialDeliveryMinimum: Int?
    /// A message layer has handed up a part of a message and not yet its last.
    private var receivingInParts = false

    private func askForPartialDelivery(_ minIncompleteLength: Int?) {
        guard layer.service.keepsMessageBoundaries, !isFramed, minIncompleteLength != partialDeliveryMinimum else { return }
        partialDeliveryMinimum = minIncompleteLength.map { max(1, $0) }
        layer.setPartialDelivery(minimumLength: partialDeliveryMinimum)
    }

    private func resumeReadingIfDrained() {
        if readingPaused && inbound.byteCount < Self.receiveLowWater {
            readingPaused = false
            layer.setReading(true)
        }
    }

    // MARK: Failure and termination (RFC 9622 section 10)

    fileprivate func layerFailed(_ error: TransportError) {
        switch state {
        case .establishing:
            let report = establishment
            establishment = nil
            emit(.establishmentError(error))
            report?(error)
            terminate(abortive: true)
        case .established, .closing:
            // Receivers see the failure (e.g. truncation) once the data before it is consumed.
            receiveFailure = receiveFailure ?? error
            emit(.connectionError(error))
            terminate(abortive: true)
        case .closed:
            break
        }
    }

    /// Closes gracefully: sends what is queued, then TLS close_notify and FIN, and waits (up to a few
    /// seconds) for the peer to finish too; an SCTP association's last stream waits for the SHUTDOWN
    /// exchange. Emits `closed`, after `connectionError` when the close could not complete.
    public func close() async {
        switch state {
        case .closed: return
        case .closing: break
        case .establishing:
            terminate(abortive: true)
            return
        case .established:
            state = .closing
            if peerFinished || layer.service.keepsMessageBoundaries {
                // A close that cannot finish (an SCTP association failing while it drains) is the
                // connection's error: what was sent may not have arrived.
                layer.finishWriting { [weak self] error in
                    self?.assumeIsolated { connection in
                        if let error { connection.layerFailed(error) } else { connection.finishClose() }
                    }
                }
            } else {
                if !sentFinal { layer.finishWriting { _ in } }
                sentFinal = true
                let timer = UVTimer(loop: loop)
                closeTimer = timer
                timer.start(after: 5_000) { [weak self] in self?.assumeIsolated { $0.finishClose() } }
            }
        }
        // The continuation's body can run after other loop events (libuv's pending phase may
        // deliver the shutdown first), so each waiter re-checks its condition there.
        await withCheckedContinuation { continuation in
            if state == .closed { continuation.resume() } else { closeWaiters.append(continuation) }
        }
    }

    /// Aborts at once: no close_notify, TCP RST. Messages still queued for `receive()` are dropped;
    /// emits `connectionError` (code `aborted`), then `closed`.
    public func abort() {
        guard state != .closed else { return }
        abortLocally()
    }

    /// RFC 9622 section 10: Abort ends the connection "without delivering any remaining Messages" and
    /// reports a `connectionError` naming the local abort.
    private func abortLocally() {
        inbound = MessageQueue()
        emit(.connectionError(TransportError(.aborted, "the application aborted the connection")))
        terminate(abortive: true)
    }

    /// RFC 9622 section 10: closes this connection and every other connection of its group gracefully.
    public func closeGroup() async {
        let others = group.connections.filter { $0 !== self }
        await close()
        for connection in others { await connection.close() }
    }

    /// RFC 9622 section 10: aborts this connection and every other connection of its group at once
    /// (on SCTP one ABORT for the association, RFC 9623 section 5.3).
    public func abortGroup() async {
        let others = group.connections.filter { $0 !== self }
        if state != .closed {
            layer.abortGroup()
            abortLocally()
        }
        for connection in others { await connection.abort() }
    }

    private func finishClose() {
        guard state != .closed else { return }
        terminate(abortive: false)
    }

    private func terminate(abortive: Bool) {
        guard state != .closed else { return }
        state = .closed
        closeTimer?.close()
        closeTimer = nil
        if abortive { layer.abort() } else { layer.close() }
        deliverToReceivers()
        sendWaiters.forEach { $0.resume() }
        sendWaiters.removeAll()
        closeWaiters.forEach { $0.resume() }
        closeWaiters.removeAll()
        group.remove(self)
        emit(.closed)
    }

    // MARK: Security interfaces (RFC 8922 section 5)

    /// SSKE: exports `length` bytes of keying material bound to this connection's session, with
    /// `label` and an optional `context` (RFC 5705; RFC 8446 section 7.5). Both ends get the same
    /// bytes for the same arguments. On dtls-chunk-sctp the session is the DTLS 1.3 or TLS 1.3 key
    /// management connection in use, which each rekey replaces (and with it the bytes); the labels
    /// of the chunk's own keys are refused.
    public func exportKeyingMaterial(label: String, context: [UInt8]? = nil, length: Int) throws -> [UInt8] {
        try layer.exportKeyingMaterial(label: label, context: context, length: length)
    }

    /// CM: this connection's TLS session as bytes, for an application to persist and later offer
    /// through `SecurityParameters.resumptionSession`; nil until the server sent a resumable one
    /// (TLS 1.3 tickets follow the handshake, so call it after the first exchange). On
    /// dtls-chunk-sctp, the newest DTLS 1.3 key management session from the peer (client side).
    public func exportSession() throws -> [UInt8]? {
        try layer.exportSession()
    }

    /// KU: on TLS, sends a TLS 1.3 KeyUpdate, asking the peer to update its keys as well when
    /// `requestPeerUpdate`. On dtls-chunk-sctp with DTLS 1.3 key management, opens a new key
    /// management connection that replaces both directions' keys (the DTLS chunk never uses
    /// KeyUpdate). Traffic continues across it; a `keysUpdated` event follows on every connection
    /// of the association once the new keys are in use.
    public func updateKeys(requestPeerUpdate: Bool = false) throws {
        try layer.updateKeys(requestPeerUpdate: requestPeerUpdate)
    }

    fileprivate func layerKeysUpdated(byPeer: Bool) {
        emit(.keysUpdated(byPeer: byPeer))
    }

    // MARK: Connection groups (RFC 9622 section 7.4)

    /// Opens a new connection in the same group, with the same properties, to the same peer. On
    /// TLS/TCP it resumes the group's TLS session.
    ///
    /// On tls-sctp the clone is the next stream of the association with a TLS connection of its own,
    /// resumed or not by `sctp.tlsHandshakes`; `security: .disabled` leaves TLS out of that stream
    /// (plain SCTP user data, RFC 3436 section 4.3.1), which is never done without asking: such a
    /// connection reports the stack `sctp` and no security details. Other security parameters
    /// are the group's and cannot be changed per clone.
    public func clone(security: SecurityParameters? = nil) async throws -> Connection {
        do {
            if let security, security.isEnabled {
                throw TransportError.invalidArgument("a clone shares its group's security parameters; pass nil, or .disabled for a plain stream")
            }
            return try await group.clone(from: self, secured: security == nil)
        } catch let error as TransportError {
            emit(.cloneError(error))
            throw error
        }
    }

    fileprivate func layerSoftError(_ error: TransportError) {
        emit(.softError(error))
    }
}

extension Connection {
    /// `assumeIsolated` without the runtime's executor check, for the calls libuv makes on the
    /// connection's loop thread once per read and per write. The check there (current executor,
    /// main-executor test, then the loop's `isIsolatingCurrentContext`) took 1-3 % of a plain TCP
    /// receiver's CPU time; the loop thread is the connection's executor by construction (a
    /// Connection's executor is its loop), which debug builds still assert.
    nonisolated func assumeOnLoop<T>(_ body: (isolated Connection) -> T) -> T {
        assert(loop.inEventLoop, "a connection's layer callback ran off its loop \(loop.name)")
        return withoutActuallyEscaping(body) { body in
            unsafeBitCast(body, to: ((Connection) -> T).self)(self)
        }
    }
}

/// Receives layer callbacks (synchronous, on the loop thread) and enters the connection's isolation,
/// which is the same thread.
private final class LayerBridge: LayerDelegate {
    weak var connection: Connection?

    func layerDidBecomeReady() { connection?.assumeIsolated { $0.layerReady() } }
    func layerDidRead(_ bytes: UnsafeRawBufferPointer) {
        nonisolated(unsafe) let bytes = bytes  // borrowed for this call, on the loop thread
        connection?.assumeOnLoop { $0.layerRead(bytes) }
    }
    func layerDidRead(owned bytes: [UInt8]) { connection?.assumeOnLoop { $0.layerRead(owned: bytes) } }
    func layerDidReadEndOfStream() { connection?.assumeIsolated { $0.layerEndOfStream() } }
    func layerDidFail(_ error: TransportError) { connection?.assumeIsolated { $0.layerFailed(error) } }
    func layerDidReportSoftError(_ error: TransportError) { connection?.assumeIsolated { $0.layerSoftError(error) } }
    func layerDidUpdateKeys(byPeer: Bool) { connection?.assumeIsolated { $0.layerKeysUpdated(byPeer: byPeer) } }
    func layerDidRead(message: [UInt8], properties: MessageProperties, isComplete: Bool) {
        connection?.assumeIsolated { $0.layerRead(message: message, properties: properties, isComplete: isComplete) }
    }
    func layerDidChangePath() { connection?.assumeIsolated { $0.emit(.pathChange) } }
}
