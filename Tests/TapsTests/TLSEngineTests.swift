import XCTest
@testable import Taps

/// `TLSEngine` on its own: a client and a server engine over real OpenSSL, joined in memory, so a
/// test decides exactly which ciphertext arrives in one piece.
final class TLSEngineTests: XCTestCase {
    let pki = TestPKI.shared

    func testAReadDecryptsIntoOneArrayOfItsSize() throws {
        let (client, server) = try connectedPair()
        let sent = pattern(200_000)  // 13 records
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        let arrays = pass(from: client, to: server)
        XCTAssertEqual(arrays.map(\.count), [200_000], "one array for all that one read brought")
        XCTAssertTrue(arrays.first == sent, "the plaintext is what was sent")
    }

    func testASmallMessageGetsAnArrayItsOwnSize() throws {
        let (client, server) = try connectedPair()
        XCTAssertNil(Array("hello".utf8).withUnsafeBytes { client.write($0) })
        let arrays = pass(from: client, to: server)
        XCTAssertEqual(arrays, [Array("hello".utf8)])
        XCTAssertLessThan(arrays.first?.capacity ?? .max, 1024, "a 5-byte message must not keep a large array alive")
    }

    /// A record split between two reads: its plaintext comes out with the second read, beside what
    /// that read brought, and nothing is lost or reordered.
    func testARecordSplitBetweenReadsArrivesWhole() throws {
        let (client, server) = try connectedPair()
        let sent = pattern(200_000)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        var ciphertext: [UInt8] = []
        client.drainOutbound { bytes, _ in ciphertext += bytes }
        var arrays: [[UInt8]] = []
        for part in [ciphertext[..<100_003], ciphertext[100_003...]] {
            let outcome = part.withUnsafeBytes { server.feed($0, handshakeDone: {}) { arrays.append($0) } }
            guard case .ok = outcome else { return XCTFail("feed: \(outcome)") }
        }
        XCTAssertTrue(Array(arrays.joined()) == sent, "the plaintext is what was sent, in order")
        XCTAssertEqual(arrays.count, 2, "one array per read")
    }

    // MARK: Record framing (TLS over SCTP user messages, RFC 3436 section 3.2)

    /// Handshake flights (which OpenSSL writes coalesced) and a write of many records each leave
    /// as writes of exactly one record, and a plain OpenSSL connection reading a byte stream (the
    /// server here frames nothing) reads them back.
    func testRecordFramingWritesEachRecordOnItsOwn() throws {
        var clientUnits: [[UInt8]] = [], serverUnits: [[UInt8]] = []
        let (client, server) = try connectedPair(recordPerWrite: true, serverRecordPerWrite: false) { fromClient, unit in
            if fromClient { clientUnits.append(unit) } else { serverUnits.append(unit) }
        }
        XCTAssertGreaterThanOrEqual(clientUnits.count, 2, "the client's flights are several records")
        XCTAssertFalse(clientUnits.contains { $0.first == 20 }, "no middlebox-compatibility ChangeCipherSpec record (RFC 8446 appendix D.4)")
        let sent = pattern(200_000)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        var written: [[UInt8]] = []
        client.drainOutbound { unit, _ in written.append(unit) }
        XCTAssertEqual(written.count, 13, "200,000 bytes are 13 records of at most 16 KB")
        XCTAssertTrue(serverUnits.contains { unit in unit.count != 5 + (Int(unit[3]) << 8 | Int(unit[4])) },
                      "the stream-framed server wrote its flight coalesced, as OpenSSL does")
        for unit in clientUnits + written {
            XCTAssertEqual(unit.count, 5 + (Int(unit[3]) << 8 | Int(unit[4])), "a write is one whole record")
        }
        var received: [UInt8] = []
        for unit in written {
            let outcome = unit.withUnsafeBytes { server.feed($0, handshakeDone: {}) { received += $0 } }
            guard case .ok = outcome else { return XCTFail("feed: \(outcome)") }
        }
        XCTAssertTrue(received == sent)
    }

    /// On a path where one packet holds most of a record, records are cut to fit one packet's
    /// fragment of a message; on a small path they stay at 16 KB; on one that takes whole records,
    /// nothing changes.
    func testRecordsFitOnePacketWhereAPacketHoldsMostOfARecord() throws {
        XCTAssertEqual(TLSEngine.recordPlaintextLimit(forMessageFragment: 16_320), 16_320 - TLSEngine.recordOverheadBound)
        XCTAssertNil(TLSEngine.recordPlaintextLimit(forMessageFragment: 1_216), "a 1,280-byte path: records span packets anyway")
        XCTAssertNil(TLSEngine.recordPlaintextLimit(forMessageFragment: 65_000), "a record fits a packet whole")
        let (client, server) = try connectedPair(recordPerWrite: true)
        client.fitRecords(toMessageFragment: 16_320)
        let sent = pattern(65_536)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        var written: [[UInt8]] = []
        client.drainOutbound { unit, _ in written.append(unit) }
        XCTAssertEqual(written.count, 5, "64 KB are four records that fill a packet each and a fifth with the rest")
        XCTAssertLessThanOrEqual(written.map(\.count).max() ?? .max, 16_320, "no record spills into a second packet")
        var received: [UInt8] = []
        for unit in written {
            let outcome = unit.withUnsafeBytes { server.feed($0, handshakeDone: {}) { received += $0 } }
            guard case .ok = outcome else { return XCTFail("feed: \(outcome)") }
        }
        XCTAssertTrue(received == sent)
    }

    /// Records that OpenSSL writes split, or two in one write, come out whole and one per unit.
    func testRecordFramingJoinsAndCutsWrites() {
        let buffers = EngineBIO.Buffers(framing: .recordPerWrite)
        let first: [UInt8] = [23, 3, 3, 0, 4, 1, 2, 3, 4]
        let second: [UInt8] = [21, 3, 3, 0, 2, 9, 9]
        let bytes = first + second
        for part in [bytes[0..<3], bytes[3..<6], bytes[6..<11], bytes[11...]] {
            Array(part).withUnsafeBytes { buffers.append($0) }
        }
        XCTAssertEqual(buffers.outboundUnits, [first, second])
        (second + first).withUnsafeBytes { buffers.append($0) }
        XCTAssertEqual(buffers.outboundUnits, [first, second, second, first])
    }

    // MARK: Records sealed by TLS13RecordProtection (tls-sctp)

    /// The writer seals every application record once the handshake is done, numbered after what
    /// OpenSSL sealed itself (the server's two tickets), and the reader at the other end opens them;
    /// the tickets go on to OpenSSL, sealed again under the keys it reads with.
    func testApplicationRecordsSealedByTheWriterAreOpenedByTheReader() throws {
        let (client, server) = try connectedPair(recordPerWrite: true, sealing: true)
        XCTAssertNil(server.recordReader, "no reading keys are derived before a record arrives")
        let sent = pattern(200_000)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        let writer = try XCTUnwrap(client.recordWriter, "the client's writer took over at its first write")
        XCTAssertEqual(writer.sequence, 13, "200,000 bytes are 13 records, numbered from 0")
        XCTAssertTrue(Array(pass(from: client, to: server).joined()) == sent, "the server opened every record")
        XCTAssertEqual(try XCTUnwrap(server.recordReader, "the server's reader took over").sequence, 13)

        let reply = pattern(40_000)
        XCTAssertNil(reply.withUnsafeBytes { server.write($0) })
        let serverWriter = try XCTUnwrap(server.recordWriter)
        XCTAssertEqual(server.recordsOpenSSLSealed, 2, "OpenSSL sealed the two tickets under the server's application keys")
        XCTAssertEqual(serverWriter.sequence, 2 + 3, "the reply's three records follow the tickets")
        XCTAssertTrue(Array(pass(from: server, to: client).joined()) == reply)
        XCTAssertEqual(try XCTUnwrap(client.recordReader).sequence, 2 + 3, "the client's reader opened the tickets and the reply")
        XCTAssertEqual(try XCTUnwrap(client.openSSLReadKeys).sequence, 2, "OpenSSL read the two tickets, sealed again for it")
    }

    /// A record split over two arrivals is opened once its end is there; a record changed on the
    /// way fails the connection with a typed error and delivers nothing of it.
    func testTheReaderJoinsASplitRecordAndRefusesATamperedOne() throws {
        let (client, server) = try connectedPair(recordPerWrite: true, sealing: true)
        let sent = pattern(10_000)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        var record: [UInt8] = []
        client.drainOutbound { unit, _ in record += unit }
        var received: [UInt8] = []
        let first = record[..<4_000].withUnsafeBytes { server.feed($0, handshakeDone: {}) { received += $0 } }
        guard case .ok = first else { return XCTFail("first part: \(first)") }
        XCTAssertTrue(received.isEmpty, "nothing of a record before its end")
        let second = record[4_000...].withUnsafeBytes { server.feed($0, handshakeDone: {}) { received += $0 } }
        guard case .ok = second else { return XCTFail("second part: \(second)") }
        XCTAssertTrue(received == sent)

        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        var tampered: [UInt8] = []
        client.drainOutbound { unit, _ in tampered += unit }
        tampered[100] ^= 0x01
        received = []
        let outcome = tampered.withUnsafeBytes { server.feed($0, handshakeDone: {}) { received += $0 } }
        guard case .failed(let error) = outcome else { return XCTFail("a tampered record was read: \(outcome)") }
        XCTAssertEqual(error.code, .protocolViolation)
        XCTAssertTrue(received.isEmpty)
    }

    /// Against an end where OpenSSL seals everything, in both directions and across a KeyUpdate
    /// that end asks for.
    func testTheWriterInteroperatesWithAnEndWhereOpenSSLSeals() throws {
        let (client, server) = try connectedPair(recordPerWrite: true, sealing: true, serverSealing: false)
        let sent = pattern(100_000)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        XCTAssertNotNil(client.recordWriter)
        XCTAssertTrue(Array(pass(from: client, to: server).joined()) == sent)
        XCTAssertNoThrow(try server.updateKeys(requestPeer: true))
        let reply = pattern(70_000)
        XCTAssertNil(reply.withUnsafeBytes { server.write($0) })
        XCTAssertNil(server.recordWriter, "OpenSSL seals the server's records")
        XCTAssertTrue(Array(pass(from: server, to: client).joined()) == reply)
        XCTAssertNil(sent.withUnsafeBytes { client.write($0) })
        XCTAssertTrue(Array(pass(from: client, to: server).joined()) == sent, "the client answered the update, then sent under its next keys")
        XCTAssertEqual(server.peerKeyUpdates, 1)
        XCTAssertNil(server.recordReader, "OpenSSL opens the server's records")
        XCTAssertEqual(try XCTUnwrap(client.recordReader, "the client's reader opened OpenSSL's records").sequence, 5,
                       "the reply's five records, numbered under the server's next keys from its KeyUpdate on")
    }

    /// KeyUpdates either way (RFC 8446 section 4.6.3), the answers OpenSSL writes by itself, and
    /// the closing alert all stay in one sequence with the writer's records: each side reads all.
    func testKeyUpdatesAndCloseNotifyStayInSequenceWithTheWritersRecords() throws {
        let (client, server) = try connectedPair(recordPerWrite: true, sealing: true)
        func send(_ text: String, from sender: TLSEngine, to receiver: TLSEngine) {
            XCTAssertNil(Array(text.utf8).withUnsafeBytes { sender.write($0) })
            XCTAssertEqual(Array(pass(from: sender, to: receiver).joined()), Array(text.utf8), text)
        }
        send("before any update", from: client, to: server)
        send("the server's first", from: server, to: client)
        XCTAssertNoThrow(try client.updateKeys(requestPeer: true))
        pass(from: client, to: server)
        XCTAssertEqual(server.peerKeyUpdates, 1)
        send("the server answers the update first", from: server, to: client)
        XCTAssertEqual(client.peerKeyUpdates, 1, "the server's own KeyUpdate arrived")
        send("under the client's second keys", from: client, to: server)
        XCTAssertNoThrow(try server.updateKeys(requestPeer: true))
        pass(from: server, to: client)
        send("the client answers the update first", from: client, to: server)
        XCTAssertEqual(server.peerKeyUpdates, 2)
        send("under the server's third keys", from: server, to: client)
        client.shutdown()
        var ciphertext: [UInt8] = []
        client.drainOutbound { unit, _ in ciphertext += unit }
        let outcome = ciphertext.withUnsafeBytes { server.feed($0, handshakeDone: {}) { _ in } }
        guard case .closeNotify = outcome else { return XCTFail("the server read \(outcome), not the close_notify") }
    }

    /// A connection that updated its keys before its first write keeps OpenSSL's sealing, whose
    /// record numbers the writer could not know.
    func testAKeyUpdateBeforeTheFirstWriteLeavesSealingToOpenSSL() throws {
        let (client, server) = try connectedPair(recordPerWrite: true, sealing: true)
        XCTAssertNoThrow(try client.updateKeys(requestPeer: false))
        pass(from: client, to: server)
        XCTAssertNil(Array("hello".utf8).withUnsafeBytes { client.write($0) })
        XCTAssertNil(client.recordWriter)
        XCTAssertEqual(Array(pass(from: client, to: server).joined()), Array("hello".utf8))
    }

    // MARK: Helpers

    private func pattern(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 % 251) }
    }

    /// Two engines that completed a TLS handshake with each other.
    /// `written` sees every write either engine made during the handshake, and whether the client made it.
    /// `sealing`: both ends seal their TLS 1.3 application records with `TLS13RecordProtection` (tls-sctp).
    private func connectedPair(recordPerWrite: Bool = false, serverRecordPerWrite: Bool? = nil, sealing: Bool = false,
                               serverSealing: Bool? = nil,
                               written: (_ fromClient: Bool, [UInt8]) -> Void = { _, _ in }) throws -> (client: TLSEngine, server: TLSEngine) {
        let client = try TLSEngine(context: TLSContext(pki.clientSecurity, role: .client), serverName: "localhost",
                                   peerAddress: nil, sessionKey: nil, recordPerWrite: recordPerWrite, sealsApplicationRecords: sealing)
        let server = try TLSEngine(context: TLSContext(pki.serverSecurity, role: .server), serverName: nil,
                                   peerAddress: nil, sessionKey: nil, recordPerWrite: serverRecordPerWrite ?? recordPerWrite,
                                   sealsApplicationRecords: serverSealing ?? sealing)
        _ = client.handshake()
        var clientDone = false, serverDone = false
        for _ in 0..<5 where !(clientDone && serverDone) {
            pass(from: client, to: server, written: { written(true, $0) }) { serverDone = true }
            pass(from: server, to: client, written: { written(false, $0) }) { clientDone = true }
        }
        XCTAssertTrue(clientDone && serverDone, "the handshake completes")
        return (client, server)
    }

    /// Feeds everything `sender` has to send to `receiver` in one piece; returns the arrays the
    /// receiver handed up.
    @discardableResult
    private func pass(from sender: TLSEngine, to receiver: TLSEngine, written: ([UInt8]) -> Void = { _ in },
                      handshakeDone: () -> Void = {}) -> [[UInt8]] {
        var ciphertext: [UInt8] = []
        sender.drainOutbound { bytes, _ in
            written(bytes)
            ciphertext += bytes
        }
        var arrays: [[UInt8]] = []
        guard !ciphertext.isEmpty else { return arrays }
        let outcome = ciphertext.withUnsafeBytes { receiver.feed($0, handshakeDone: handshakeDone) { arrays.append($0) } }
        if case .ok = outcome {} else { XCTFail("feed: \(outcome)") }
        return arrays
    }
}
