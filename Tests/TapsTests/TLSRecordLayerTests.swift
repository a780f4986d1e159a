import XCTest
@testable import Taps

/// A `TLSLayer` over one SCTP stream's messages, without sockets: two layers joined by in-memory
/// message pipes, so a test decides how the records travel (RFC 3436 section 3.2).
final class TLSRecordLayerTests: XCTestCase {
    let pki = TestPKI.shared

    /// Every record leaves as its own message; the receiver is liberal: records split over
    /// messages, and several in one message, are read all the same.
    func testRecordsLeaveOneAMessageAndArriveHoweverCut() async throws {
        let loop = EventLoop(name: "test-record-layer")
        defer { loop.shutdown() }
        let pki = self.pki
        let result = try await loop.submit { () -> (writesWereRecords: Bool, received: [UInt8], readyBoth: Bool) in
            let clientPipe = MessagePipe(), serverPipe = MessagePipe()
            let client = TLSLayer(over: clientPipe, engine: try TLSEngine(context: TLSContext(pki.clientSecurity, role: .client), serverName: "localhost",
                                                                          peerAddress: nil, sessionKey: nil, recordPerWrite: true), loop: loop)
            let server = TLSLayer(over: serverPipe, engine: try TLSEngine(context: TLSContext(pki.serverSecurity, role: .server), serverName: nil,
                                                                          peerAddress: nil, sessionKey: nil, recordPerWrite: true), loop: loop)
            let clientEnd = Recorder(), serverEnd = Recorder()
            client.delegate = clientEnd
            server.delegate = serverEnd
            server.start()
            client.start()
            var writesWereRecords = true
            // Carries what each side wrote to the other, cut into pieces of `cut` bytes across record
            // boundaries: a record split over messages, and the end of one with the start of the next.
            func carry(_ from: MessagePipe, to layer: TLSLayer, cut: Int) {
                let writes = from.take()
                writesWereRecords = writesWereRecords && writes.allSatisfy { $0.count == 5 + (Int($0[3]) << 8 | Int($0[4])) }
                let bytes = Array(writes.joined())
                for start in stride(from: 0, to: bytes.count, by: cut) {
                    layer.layerDidRead(message: Array(bytes[start..<min(bytes.count, start + cut)]), properties: .default, isComplete: true)
                }
            }
            for _ in 0..<6 where !(clientEnd.ready && serverEnd.ready) {
                carry(clientPipe, to: server, cut: 97)
                carry(serverPipe, to: client, cut: 1_000)
            }
            let sent = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            sent.withUnsafeBytes { client.write($0, completion: nil) }
            XCTAssertEqual(clientPipe.pending, 3, "40,000 bytes are three records, three messages")
            carry(clientPipe, to: server, cut: 25_000)  // one and a half records, then the rest
            return (writesWereRecords, serverEnd.received, clientEnd.ready && serverEnd.ready)
        }
        XCTAssertTrue(result.readyBoth, "the handshake completed over re-cut messages")
        XCTAssertTrue(result.writesWereRecords, "every write the TLS layers made was exactly one record")
        XCTAssertTrue(result.received == (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }, "the plaintext arrived whole and in order")
    }
}

/// One end of an in-memory path of messages: keeps what the layer above writes until the test takes it.
private final class MessagePipe: Layer {
    weak var delegate: LayerDelegate?
    private var writes: [[UInt8]] = []
    var service: LayerService { .orderedMessages }
    var localAddress: SocketAddress? { nil }
    var remoteAddress: SocketAddress? { nil }
    var pending: Int { writes.count }

    func take() -> [[UInt8]] {
        defer { writes.removeAll() }
        return writes
    }

    func start() { delegate?.layerDidBecomeReady() }
    func write(_ bytes: UnsafeRawBufferPointer, completion: ((TransportError?) -> Void)?) {
        writes.append(Array(bytes))
        completion?(nil)
    }
    func finishWriting(completion: @escaping (TransportError?) -> Void) { completion(nil) }
    func setReading(_ enabled: Bool) {}
    func abort() {}
    func close() {}
}

/// What a TLS layer hands up.
private final class Recorder: LayerDelegate {
    var ready = false
    var received: [UInt8] = []
    func layerDidBecomeReady() { ready = true }
    func layerDidRead(_ bytes: UnsafeRawBufferPointer) { received += bytes }
    func layerDidReadEndOfStream() {}
    func layerDidFail(_ error: TransportError) { XCTFail("the TLS layer failed: \(error)") }
}
