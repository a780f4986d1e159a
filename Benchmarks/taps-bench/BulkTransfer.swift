import Synchronization
import Taps

/// The two sides of a bulk measurement, shared by every stack. Each side runs as a task that
/// prefers the connection's loop, in a function isolated to the connection (`isolated
/// Connection`): every `send` / `receive` is then a plain call on the loop. A closure that is not
/// isolated to the connection hops to the connection's executor and back for each call, and a task
/// without the loop as its preferred executor is moved again each time a suspended `receive()`
/// resumes (Docs/Benchmarks.md has the figures; Docs/GettingStarted.md the pattern).
enum BulkTransfer {
    /// Connects and sends `messageSize`-byte messages for `seconds`, then closes gracefully; with
    /// `streams` above one, on that many clones (streams of one association) side by side.
    static func send(_ client: Preconnection, streams: Int = 1, seconds: Double, messageSize: Int) async throws {
        let first = try await client.initiate()
        var connections = [first]
        for _ in 1..<max(1, streams) { connections.append(try await first.clone()) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask {
                    try await Task(executorPreference: connection.loop) {
                        try await send(on: connection, seconds: seconds, messageSize: messageSize)
                    }.value
                }
            }
            try await group.waitForAll()
        }
    }

    private static func send(on connection: isolated Connection, seconds: Double, messageSize: Int) async throws {
        let message = Self.message(count: messageSize, pageOffset: messagePageOffset)
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            try await connection.send(message)
        }
        await connection.close()
    }

    /// Where in a page the message's first byte sits, in Taps' runs and the C baseline's
    /// (`MESSAGE_PAGE_OFFSET`). Linux copies a message into page-aligned socket buffers with
    /// `rep movsb`, which on this machine's AMD cores runs at a third of the speed when the message
    /// starts 1-31 bytes before a page boundary (plain TCP 1.0 against 3.3 GB/s, Taps and the C
    /// baseline alike). Left to malloc, that was a coin toss per process that decided a run's
    /// figures: the "slow mode" of plain TCP in Docs/Benchmarks.md.
    static let messagePageOffset = 2048

    /// A `count`-byte message of 0x78 bytes that starts `pageOffset` bytes into a page. An array's
    /// storage is wherever the allocator puts it, so this asks for arrays, holding each miss so the
    /// next lands elsewhere, until one starts there (a 64 KB array's block is 48 bytes further along
    /// a page than the last one's, so at most 256 tries). A size that never gets there gets an array
    /// wherever it lands.
    static func message(count: Int, pageOffset: Int) -> [UInt8] {
        var misses: [[UInt8]] = []  // empty, each holding its block until the search ends
        for _ in 0..<(count > 0 ? 1024 : 0) {
            let candidate = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                guard Int(bitPattern: buffer.baseAddress) & 4095 == pageOffset else { return }
                buffer.initialize(repeating: 0x78)
                initialized = count
            }
            if !candidate.isEmpty { return candidate }
            misses.append(candidate)
        }
        return [UInt8](repeating: 0x78, count: count)
    }

    /// MB/s (10^6 bytes) over `elapsed`.
    static func megabytesPerSecond(_ bytes: Int, _ elapsed: Duration) -> Double {
        let seconds = elapsed.inSeconds
        return seconds > 0 ? Double(bytes) / seconds / 1e6 : 0
    }
}

extension BulkTransfer {
    /// The receiving side: takes the listener's first connection and counts what arrives until the
    /// peer's final message. Returns the bytes and the time between the first and the last message
    /// that carried any.
    static func receive(on listener: Listener) async -> (bytes: Int, elapsed: Duration) {
        await Task(executorPreference: listener.loop) { () -> (bytes: Int, elapsed: Duration) in
            var iterator = listener.connections.makeAsyncIterator()
            guard let connection = await iterator.next() else { return (0, .zero) }
            let received = await receive(on: connection)
            return (received.bytes, received.first.map { received.last - $0 } ?? .zero)
        }.value
    }

    /// The receiving side of a transfer on several streams: the listener's first `connections`
    /// connections, counted together, from the first message carrying data on any to the last.
    static func receive(on listener: Listener, connections: Int) async -> (bytes: Int, elapsed: Duration) {
        guard connections > 1 else { return await receive(on: listener) }
        return await withTaskGroup(of: Received.self) { group in
            var iterator = listener.connections.makeAsyncIterator()
            for _ in 0..<connections {
                guard let connection = await iterator.next() else { break }
                group.addTask { await Task(executorPreference: connection.loop) { await receive(on: connection) }.value }
            }
            var bytes = 0
            var first: ContinuousClock.Instant?, last: ContinuousClock.Instant?
            for await received in group {
                bytes += received.bytes
                if let start = received.first { first = min(first ?? start, start) }
                last = max(last ?? received.last, received.last)
            }
            guard let first, let last else { return (bytes, .zero) }
            return (bytes, last - first)
        }
    }

    /// dtls-chunk-sctp: the receiving association's DTLS chunk status after the transfer.
    static let receiverChunkStatus = Mutex<DTLSChunkStatus?>(nil)

    private struct Received {
        let bytes: Int
        let first: ContinuousClock.Instant?
        let last: ContinuousClock.Instant
    }

    private static func receive(on connection: isolated Connection) async -> Received {
        var bytes = 0
        var first: ContinuousClock.Instant?
        var last = ContinuousClock.now
        while let message = try? await connection.receive() {
            if !message.content.isEmpty {
                if first == nil { first = .now }
                bytes += message.content.count
                last = .now
            }
            if message.isFinal { break }
        }
        if let status = connection.dtlsChunkStatus { receiverChunkStatus.withLock { $0 = status } }
        await connection.close()
        return Received(bytes: bytes, first: first, last: last)
    }
}
