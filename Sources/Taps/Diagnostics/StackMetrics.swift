internal import CoreMetrics
import Synchronization

/// The counters and meters of one stack, made by one swift-metrics factory (Docs/Metrics.md lists
/// them with their dimensions). A Preconnection's `initiate()` or `listen()` takes the factory that
/// is current there, the bootstrapped one or one bound with `withMetricsFactory`, so every connection,
/// association and handshake it leads to reports to it. With no backend bootstrapped every call is
/// swift-metrics' no-op. Sendable: the metric objects are.
final class StackMetrics: Sendable {
    let stack: String
    private let factory: any MetricsFactory

    // Connections (Connection): by state, and how many were made.
    let connectionsOpened: Counter
    let establishing: Meter
    let established: Meter
    let closing: Meter
    // Security handshakes (TLSLayer, DTLS13KeyManagement) and key updates (TLS KeyUpdate, DTLS chunk rekeys).
    let handshakesFull: Counter
    let handshakesResumed: Counter
    let handshakesFailed: Counter
    let keyUpdates: Counter
    // Application data (Connection): what `send()` accepted and what reached the application.
    let messagesSent: Counter
    let messagesReceived: Counter
    let bytesSent: Counter
    let bytesReceived: Counter
    /// Bytes handed to the stack whose write has not completed, over all of the stack's connections.
    let sendQueueBytes: Meter
    // SCTP packets on the datagram path (SCTPPath), and what was dropped before usrsctp saw it.
    let packetsSent: Counter
    let packetsReceived: Counter
    let droppedBadChecksum: Counter
    let droppedTooShort: Counter
    // The DTLS chunk's drops (DTLSChunkPathFilter), from the protection operator's counters.
    let chunkAEADFailures: Counter
    let chunkReplays: Counter
    let chunkUnprotected: Counter
    let chunkMalformed: Counter
    let chunkNoKey: Counter
    /// usrsctp's retransmitted DATA chunks, process-wide (usrsctp keeps no per-association count).
    let sctpRetransmissions: Counter

    private init(stack: String, factory: any MetricsFactory) {
        self.stack = stack
        self.factory = factory
        func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: [("stack", stack)] + dimensions, factory: factory)
        }
        func meter(_ label: String, _ dimensions: [(String, String)] = []) -> Meter {
            Meter(label: label, dimensions: [("stack", stack)] + dimensions, factory: factory)
        }
        connectionsOpened = counter("taps_connections_opened_total")
        establishing = meter("taps_connections", [("state", "establishing")])
        established = meter("taps_connections", [("state", "established")])
        closing = meter("taps_connections", [("state", "closing")])
        handshakesFull = counter("taps_handshakes_total", [("result", "full")])
        handshakesResumed = counter("taps_handshakes_total", [("result", "resumed")])
        handshakesFailed = counter("taps_handshakes_total", [("result", "failed")])
        keyUpdates = counter("taps_key_updates_total")
        messagesSent = counter("taps_messages_total", [("direction", "sent")])
        messagesReceived = counter("taps_messages_total", [("direction", "received")])
        bytesSent = counter("taps_bytes_total", [("direction", "sent")])
        bytesReceived = counter("taps_bytes_total", [("direction", "received")])
        sendQueueBytes = meter("taps_send_queue_bytes")
        packetsSent = counter("taps_sctp_packets_total", [("direction", "sent")])
        packetsReceived = counter("taps_sctp_packets_total", [("direction", "received")])
        droppedBadChecksum = counter("taps_sctp_packets_dropped_total", [("reason", "checksum")])
        droppedTooShort = counter("taps_sctp_packets_dropped_total", [("reason", "too_short")])
        chunkAEADFailures = counter("taps_dtls_chunk_packets_dropped_total", [("reason", "aead")])
        chunkReplays = counter("taps_dtls_chunk_packets_dropped_total", [("reason", "replay")])
        chunkUnprotected = counter("taps_dtls_chunk_packets_dropped_total", [("reason", "unprotected")])
        chunkMalformed = counter("taps_dtls_chunk_packets_dropped_total", [("reason", "malformed")])
        chunkNoKey = counter("taps_dtls_chunk_packets_dropped_total", [("reason", "no_key")])
        sctpRetransmissions = Counter(label: "taps_sctp_retransmissions_total", dimensions: [], factory: factory)
    }

    /// The metrics of `stack` under the factory current in the calling task.
    static func current(stack: String) -> StackMetrics {
        make(stack: stack, factory: MetricsSystem.factory)
    }

    /// The same factory's metrics for another stack (a clone that leaves security out).
    func forStack(_ name: String) -> StackMetrics {
        name == stack ? self : Self.make(stack: name, factory: factory)
    }

    /// Made once per factory object and stack (factories are classes in practice: the no-op one,
    /// the test kit's, Prometheus'), so a Preconnection does not make its metrics anew per call.
    private static func make(stack: String, factory: any MetricsFactory) -> StackMetrics {
        guard type(of: factory) is AnyClass else { return StackMetrics(stack: stack, factory: factory) }
        let key = CacheKey(factory: ObjectIdentifier(factory as AnyObject), stack: stack)
        return cache.withLock { cache in
            if let made = cache[key] { return made }
            let made = StackMetrics(stack: stack, factory: factory)
            cache[key] = made
            return made
        }
    }

    private struct CacheKey: Hashable {
        let factory: ObjectIdentifier
        let stack: String
    }

    /// Holds each factory it saw, so an identifier is never reused by another object.
    private static let cache = Mutex<[CacheKey: StackMetrics]>([:])

    // MARK: Recording

    func connectionStateChanged(from old: Connection.State?, to new: Connection.State?) {
        guard old != new else { return }
        if let old { meter(for: old)?.decrement() }
        if let new { meter(for: new)?.increment() }
    }

    private func meter(for state: Connection.State) -> Meter? {
        switch state {
        case .establishing: establishing
        case .established: established
        case .closing: closing
        case .closed: nil
        }
    }

    func handshakeCompleted(resumed: Bool) {
        (resumed ? handshakesResumed : handshakesFull).increment()
    }

    /// Adds what the DTLS chunk dropped since `reported`, which then holds `now`.
    func recordChunkDrops(_ now: DTLSChunkCounters, since reported: inout DTLSChunkCounters) {
        func add(_ counter: Counter, _ new: Int, _ old: Int) { if new > old { counter.increment(by: new - old) } }
        add(chunkAEADFailures, now.aeadFailures, reported.aeadFailures)
        add(chunkReplays, now.replaysDropped, reported.replaysDropped)
        add(chunkUnprotected, now.droppedUnprotected, reported.droppedUnprotected)
        add(chunkMalformed, now.malformedDropped, reported.malformedDropped)
        add(chunkNoKey, now.noKeyDropped, reported.noKeyDropped)
        reported = now
    }
}
