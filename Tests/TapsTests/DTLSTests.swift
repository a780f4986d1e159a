import XCTest
@testable import Taps

final class DTLSTests: XCTestCase {
    let pki = TestPKI.shared

    private func listener(alpn: [String] = []) async throws -> Listener {
        var security = pki.serverSecurity
        security.applicationProtocols = alpn
        return try await Preconnection(local: .loopback(), transport: .unreliableDatagram, security: security).listen()
    }

    private func client(_ port: UInt16, security: SecurityParameters? = nil) -> Preconnection {
        Preconnection(remote: .host("localhost", port: port), transport: .unreliableDatagram, security: security ?? pki.clientSecurity)
    }

    func testSecureDatagramsSelectDTLSAndEcho() async throws {
        let listener = try await listener(alpn: ["taps-dgram"])
        XCTAssertEqual(listener.stack.name, "dtls-udp")
        let echo = startEcho(listener)
        var security = pki.clientSecurity
        security.applicationProtocols = ["other", "taps-dgram"]
        let connection = try await client(listener.localAddress.port, security: security).initiate()
        XCTAssertEqual(connection.stack.name, "dtls-udp")
        let details = await connection.securityDetails
        XCTAssertEqual(details?.protocolVersion, "DTLSv1.2")
        XCTAssertEqual(details?.applicationProtocol, "taps-dgram")
        for size in [1, 100, 1000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 3) }
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertTrue(reply.isComplete)
            XCTAssertEqual(reply.content, payload, "datagram of \(size) bytes")
        }
        // The listener made the client prove its address before keeping any state for it.
        let verifies = await listener.helloVerifyRequestsSent
        XCTAssertEqual(verifies, 1)
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testWrongCAIsRejected() async throws {
        let listener = try await listener()
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: pki.otherCA)
        _ = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await self.client(listener.localAddress.port, security: security).initiate(timeout: .seconds(5))
        }
        await listener.stop()
    }

    func testDatagramsWithoutAValidCookieCreateNoConnection() async throws {
        let listener = try await listener()
        // A plain UDP sender throws junk and a fake handshake record at the DTLS listener.
        let sender = try await Preconnection(remote: .loopback(port: listener.localAddress.port),
                                             transport: .unreliableDatagram, security: .disabled).initiate()
        try await sender.send(Array("not dtls at all".utf8))
        try await sender.send([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0])
        try await Task.sleep(for: .milliseconds(100))
        let failures = await listener.failedEstablishments
        XCTAssertEqual(failures, 0)
        // A real client still gets through afterwards.
        let echo = startEcho(listener)
        let connection = try await client(listener.localAddress.port).initiate()
        try await connection.send("after the junk")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "after the junk")
        await connection.close()
        await sender.close()
        await listener.stop()
        echo.cancel()
    }

    func testClientHelloFloodWithoutCookiesLeavesNoState() async throws {
        let listener = try await listener()
        // A genuine ClientHello, made by an OpenSSL DTLS client engine, replayed as a flood would be.
        let context = try TLSContext(pki.clientSecurity, role: .client, datagram: true)
        let engine = try TLSEngine(context: context, serverName: "localhost", peerAddress: nil, sessionKey: nil)
        _ = engine.handshake()
        var hello: [UInt8] = []
        engine.drainOutbound { datagram, _ in hello = datagram }
        XCTAssertEqual(hello.first, 22, "a handshake record")
        let flooder = try await Preconnection(remote: .loopback(port: listener.localAddress.port),
                                              transport: .unreliableDatagram, security: .disabled).initiate()
        // In bursts of 20, so neither socket's receive buffer can overflow (UDP would drop the
        // excess and the count would never be reached); a watchdog turns a lost datagram into a
        // failure instead of a hang.
        let floodSize = 200
        let watchdog = abort(flooder, after: .seconds(20))
        for _ in 0..<floodSize / 20 {
            for _ in 0..<20 { try await flooder.send(hello) }
            for _ in 0..<20 {
                let reply = try await flooder.receive()
                XCTAssertEqual(reply.content[13], 3, "HelloVerifyRequest (RFC 6347 section 4.2.1)")
            }
        }
        watchdog.cancel()
        let verifies = await listener.helloVerifyRequestsSent
        let peers = await listener.peersWithState
        let failures = await listener.failedEstablishments
        XCTAssertEqual(verifies, floodSize)
        XCTAssertEqual(peers, 0, "no per-client state before a cookie comes back")
        XCTAssertEqual(failures, 0)
        await flooder.abort()
        await listener.stop()
    }

    func testSessionResumptionOverDTLS() async throws {
        let listener = try await listener()
        let echo = startEcho(listener)
        var security = pki.clientSecurity
        security.sessionCache = TLSSessionCache()
        var resumed: [Bool] = []
        for _ in 0..<2 {
            let connection = try await client(listener.localAddress.port, security: security).initiate()
            try await connection.send("resume me")
            _ = try await connection.receive()
            resumed.append(await connection.securityDetails?.resumed ?? false)
            // A graceful close: OpenSSL does not resume a session whose connection was aborted.
            await connection.close()
        }
        XCTAssertEqual(resumed, [false, true])
        await listener.stop()
        echo.cancel()
    }

    func testCloseSendsCloseNotify() async throws {
        let listener = try await listener()
        let connection = try await client(listener.localAddress.port).initiate()
        try await connection.send("hello")
        let accepted = try await listener.firstConnection()
        _ = try await accepted.receive()
        let closing = Task { await connection.close() }
        let end = try await accepted.receive()
        XCTAssertTrue(end.isFinal, "close_notify ends the peer's connection cleanly")
        await accepted.close()
        await closing.value
        await listener.stop()
    }

    func testPinningOverDTLS() async throws {
        let listener = try await listener()
        let echo = startEcho(listener)
        var pinned = pki.clientSecurity
        pinned.trustVerifier = .pinning(publicKeySHA256: [try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.serverCert))])
        let connection = try await client(listener.localAddress.port, security: pinned).initiate()
        try await connection.send("pinned datagram")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "pinned datagram")
        await connection.abort()
        var wrong = pki.clientSecurity
        wrong.trustVerifier = .pinning(publicKeySHA256: [try TrustVerifier.publicKeySHA256(ofCertificate: .file(pki.path("rsa.pem")))])
        await XCTAssertThrowsTransportError(.certificateRejected) {
            try await self.client(listener.localAddress.port, security: wrong).initiate(timeout: .seconds(5))
        }
        await listener.stop()
        echo.cancel()
    }

    func testNoServerIsATimeoutNotAHang() async throws {
        // A UDP port with nothing behind it: the handshake retransmits, then gives up.
        let port = try await freePort(udp: true)
        _ = await XCTAssertThrowsTransportError(.timedOut) {
            try await self.client(port).initiate(timeout: .seconds(2))
        }
    }

    func testMessagesLargerThanOneRecordAreRefusedNotSplit() async throws {
        let listener = try await listener()
        let echo = startEcho(listener)
        let connection = try await client(listener.localAddress.port).initiate()
        let maybeLimit = await connection.sendMsgMaxLen
        let limit = try XCTUnwrap(maybeLimit)
        XCTAssertTrue((1000..<1232).contains(limit), "one record at a 1280-byte path MTU, got \(limit)")
        // The largest message arrives whole, as one message.
        let largest = (0..<limit).map { UInt8(truncatingIfNeeded: $0) }
        try await connection.send(largest)
        let reply = try await connection.receive()
        XCTAssertEqual(reply.content, largest)
        // One byte more would be split into two records, i.e. two messages: it is refused instead.
        let events = await connection.events()
        await XCTAssertThrowsTransportError(.messageTooLarge) { try await connection.send([UInt8](repeating: 1, count: limit + 1)) }
        await connection.close()
        var errors: [TransportError] = []
        for await event in events { if case .sendError(_, let error) = event { errors.append(error) } }
        XCTAssertEqual(errors.first?.code, .messageTooLarge)
        await listener.stop()
        echo.cancel()
    }

    /// 200 handshakes at once, twice: every client gets its echo (the listener's socket buffers hold
    /// a burst of 200 flights), and once the clients are gone and the listener is stopped, its loop
    /// holds nothing (connections whose close_notify was lost end by the idle timeout).
    func testTwoHundredConcurrentHandshakesAllEchoAndTheStoppedListenerLeavesNothingOpen() async throws {
        let loop = EventLoop(name: "dtls-burst")
        defer { loop.shutdown() }
        var transport = TransportProperties.unreliableDatagram
        transport.incomingDatagramIdleTimeout = .seconds(1)
        let listener = try await Preconnection(local: .loopback(), transport: transport, security: pki.serverSecurity,
                                               loop: loop).listen()
        let echo = startEcho(listener)
        let client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .unreliableDatagram,
                                   security: pki.clientSecurity)
        var echoed = 0
        for round in 0..<2 {
            echoed += try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let connection = try await client.initiate(timeout: .seconds(20))
                        let text = "round \(round) client \(index)"
                        try await connection.send(text)
                        let watchdog = abort(connection, after: .seconds(10))  // a lost echo fails, not hangs
                        defer { watchdog.cancel() }
                        let reply = try? await connection.receive()
                        await connection.close()
                        return reply?.text == text
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        XCTAssertEqual(echoed, 400)
        await listener.stop()
        var open = try await loop.openHandleCount()
        for _ in 0..<250 where open > 0 {
            try await Task.sleep(for: .milliseconds(20))
            open = try await loop.openHandleCount()
        }
        XCTAssertEqual(open, 0, "the stopped listener closed its socket after its last peer")
        echo.cancel()
    }
}
