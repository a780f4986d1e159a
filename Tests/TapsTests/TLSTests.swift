import Foundation
import XCTest
@testable import Taps

final class TLSTests: XCTestCase {
    let pki = TestPKI.shared

    private func tlsListener(_ security: SecurityParameters? = nil, framer: (any MessageFramer)? = LengthPrefixFramer()) async throws -> Listener {
        try await Preconnection(local: .loopback(), transport: framer == nil ? .reliableInOrderStream : .reliableMessage,
                                security: security ?? pki.serverSecurity, framer: framer).listen()
    }

    private func client(_ port: UInt16, host: String = "localhost", security: SecurityParameters? = nil) -> Preconnection {
        Preconnection(remote: .host(host, port: port), transport: .reliableMessage, security: security ?? pki.clientSecurity,
                      framer: LengthPrefixFramer())
    }

    func testEchoOverTLSWithNegotiatedDetails() async throws {
        let listener = try await tlsListener()
        XCTAssertEqual(listener.stack.name, "tls-tcp")
        let echo = startEcho(listener)
        let connection = try await client(listener.localAddress.port).initiate()
        XCTAssertEqual(connection.stack.name, "tls-tcp")
        let maybeDetails = await connection.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertEqual(details.protocolVersion, "TLSv1.3")
        XCTAssertTrue(details.cipherSuite.hasPrefix("TLS_"), details.cipherSuite)
        XCTAssertEqual(details.peerCertificateSubject, "/CN=localhost")
        for size in [1, 16_000, 200_000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertEqual(reply.content, payload)
        }
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    /// Every TLS socket on a loop reads into the loop's one shared buffer: transfers side by side on
    /// one loop, both ends on it, arrive intact (a reader keeping borrowed bytes past its read
    /// would see them overwritten by another connection's).
    func testTransfersSharingALoopsReadBufferArriveIntact() async throws {
        let loop = EventLoop(name: "shared-read-buffer")
        defer { loop.shutdown() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                let listener = try await Preconnection(local: .loopback(), security: pki.serverSecurity, loop: loop).listen()
                let client = Preconnection(remote: .loopback(port: listener.localAddress.port), security: pki.clientSecurity, loop: loop)
                group.addTask {
                    try await assertBulkTransferIntact(from: client, to: listener)
                    await listener.stop()
                }
            }
            try await group.waitForAll()
        }
    }

    func testTLS12CanBeForced() async throws {
        let listener = try await tlsListener()
        let echo = startEcho(listener)
        var security = pki.clientSecurity
        security.allowedVersions = [.tls12]
        let connection = try await client(listener.localAddress.port, security: security).initiate()
        let version = await connection.securityDetails?.protocolVersion
        XCTAssertEqual(version, "TLSv1.2")
        try await connection.send("over 1.2")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "over 1.2")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testWrongCAIsRejected() async throws {
        let listener = try await tlsListener()
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: pki.otherCA)
        let error = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await self.client(listener.localAddress.port, security: security).initiate()
        }
        XCTAssertTrue(error?.message.contains("unable to get local issuer certificate") ?? false, "\(String(describing: error))")
        // The server's side fails when the client's alert arrives, on the loop that accepted it,
        // which may be after the client has its error.
        let failures = try await listener.failedEstablishments(within: .seconds(1))
        XCTAssertEqual(failures, 1)
        await listener.stop()
    }

    func testHostnameMismatchIsRejected() async throws {
        let listener = try await tlsListener()
        var security = pki.clientSecurity
        security.serverName = "example.net"
        _ = await XCTAssertThrowsTransportError(.hostnameMismatch) {
            try await self.client(listener.localAddress.port, security: security).initiate()
        }
        await listener.stop()
    }

    func testIPAddressIsVerifiedWithoutAName() async throws {
        let listener = try await tlsListener()
        let echo = startEcho(listener)
        let connection = try await client(listener.localAddress.port, host: "127.0.0.1").initiate()
        try await connection.send("by address")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "by address")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testExpiredCertificateIsRejected() async throws {
        let listener = try await tlsListener(.server(identity: .pemFiles(certificate: pki.expiredCert, key: pki.expiredKey)))
        let error = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await self.client(listener.localAddress.port).initiate()
        }
        XCTAssertTrue(error?.message.contains("expired") ?? false, "\(String(describing: error))")
        await listener.stop()
    }

    func testUnreadablePEMFailsBeforeAnyPacket() async throws {
        let security = SecurityParameters.server(identity: .pemFiles(certificate: "/nonexistent/cert.pem", key: pki.serverKey))
        let error = await XCTAssertThrowsTransportError(.invalidCredentials) {
            try await Preconnection(local: .loopback(), security: security).listen()
        }
        XCTAssertTrue(error?.message.contains("/nonexistent/cert.pem") ?? false)

        var garbage = pki.clientSecurity
        garbage.trustedRoots = .pem(.bytes(Array("not a certificate".utf8)))
        // Port 1: were any packet sent, this would fail with connectionRefused instead.
        _ = await XCTAssertThrowsTransportError(.invalidCredentials) {
            try await self.client(1, security: garbage).initiate()
        }
        let wrongKey = SecurityParameters.server(identity: .pemFiles(certificate: pki.serverCert, key: pki.expiredKey))
        _ = await XCTAssertThrowsTransportError(.invalidCredentials) {
            try await Preconnection(local: .loopback(), security: wrongKey).listen()
        }
    }

    func testGarbageInsteadOfTLSIsAProtocolViolation() async throws {
        // A plain TCP server that answers the ClientHello with bytes that are not TLS records.
        let plain = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let garbageServer = Task {
            for await connection in plain.connections {
                _ = try? await connection.receive()
                try? await connection.send(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
            }
        }
        _ = await XCTAssertThrowsTransportError(.protocolViolation) {
            try await self.client(plain.localAddress.port).initiate()
        }
        await plain.stop()
        garbageServer.cancel()
    }

    func testNoApplicationDataBeforeHandshake() async throws {
        // The server's listener never sees a connection whose handshake failed, and the client
        // cannot send on a failed establishment: the rejected client never reaches `send`.
        let listener = try await tlsListener()
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: pki.otherCA)
        _ = await XCTAssertThrowsTransportError(.certificateRejected) {
            try await self.client(listener.localAddress.port, security: security).initiate()
        }
        // A good client still gets through, and is the first connection delivered.
        let good = try await client(listener.localAddress.port).initiate()
        var iterator = listener.connections.makeAsyncIterator()
        let first = await iterator.next()
        let firstRemote = await first?.remoteAddress
        let goodLocal = await good.localAddress
        XCTAssertEqual(firstRemote, goodLocal)
        async let goodClosed: Void = good.close()
        await first?.close()
        await goodClosed
        await listener.stop()
    }

    func testTruncationWithoutCloseNotifyIsReported() async throws {
        // Server aborts (TCP close without close_notify) after sending: the client must see an
        // error, not a clean end of data.
        let listener = try await tlsListener(framer: nil)
        let server = Task {
            for await connection in listener.connections {
                try? await connection.send("partial")
                await connection.abort()
            }
        }
        let connection = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port),
                                                 security: pki.clientSecurity).initiate()
        var sawError: TransportError?
        do {
            while true {
                let message = try await connection.receive()
                if message.isFinal { break }
            }
        } catch let error as TransportError {
            sawError = error
        }
        XCTAssertNotNil(sawError, "a TCP end without close_notify must not look like a clean end")
        XCTAssertTrue([.truncated, .connectionReset].contains(sawError?.code), "\(String(describing: sawError))")
        await listener.stop()
        server.cancel()
    }

    func testGracefulCloseSendsCloseNotify() async throws {
        let listener = try await tlsListener(framer: nil)
        let connection = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port),
                                                 security: pki.clientSecurity).initiate()
        let accepted = try await listener.firstConnection()
        try await connection.send("last words")
        let closing = Task { await connection.close() }
        let received = try await receiveBytes(accepted, count: 10)
        XCTAssertEqual(String(decoding: received, as: UTF8.self), "last words")
        let end = try await accepted.receive()
        XCTAssertTrue(end.isFinal, "close_notify is a clean, final end")
        await accepted.close()
        await closing.value
        await listener.stop()
    }

    /// 8 MB through a paused receive queue (reading stops at its high-water mark and resumes as
    /// the application drains it): every byte arrives, in order, and the stream ends cleanly.
    func testBulkTransferArrivesIntactThroughFlowControl() async throws {
        let listener = try await tlsListener(framer: nil)
        try await assertBulkTransferIntact(from: Preconnection(remote: .host("localhost", port: listener.localAddress.port),
                                                               security: pki.clientSecurity), to: listener)
        await listener.stop()
    }

    /// The receiver aborts with megabytes waiting in its receive queue: nothing more is handed up
    /// (RFC 9622 section 10: Abort delivers no remaining messages, and reports a connectionError),
    /// the sender learns of the reset, and the process carries on.
    func testAbortDropsQueuedMessages() async throws {
        let listener = try await tlsListener(framer: nil)
        let port = listener.localAddress.port, security = pki.clientSecurity
        let sender = Task { () -> TransportError? in
            do {
                let connection = try await Preconnection(remote: .host("localhost", port: port), security: security).initiate()
                for _ in 0..<256 { try await connection.send([UInt8](repeating: 7, count: 65_536)) }
                await connection.close()
                return nil
            } catch {
                return error as? TransportError
            }
        }
        let accepted = try await listener.firstConnection()
        try await Task.sleep(for: .milliseconds(100))  // reads arrive and are queued
        _ = try await accepted.receive()
        let events = await accepted.events()
        await accepted.abort()
        try await Task.sleep(for: .milliseconds(100))  // any read still arriving comes after the abort
        let state = await accepted.state
        XCTAssertEqual(state, .closed)
        await XCTAssertThrowsTransportError(.connectionClosed) { try await accepted.receive() }
        var errors: [TransportError.Code] = []
        for await event in events { if case .connectionError(let error) = event { errors.append(error.code) } }
        XCTAssertEqual(errors, [.aborted])
        let senderError = await sender.value
        XCTAssertNotNil(senderError, "16 MB cannot all have gone into a connection aborted after 64 KB")
        await listener.stop()
    }

    func testCloneResumesTheGroupsSession() async throws {
        let listener = try await tlsListener()
        let echo = startEcho(listener)
        let first = try await client(listener.localAddress.port).initiate()
        try await first.send("one")
        _ = try await first.receive()  // TLS 1.3 tickets arrive after the handshake
        let firstResumed = await first.securityDetails?.resumed
        XCTAssertEqual(firstResumed, false)
        let second = try await first.clone()
        XCTAssertTrue(first.group === second.group)
        XCTAssertEqual(first.group.count, 2)
        let resumed = await second.securityDetails?.resumed
        XCTAssertEqual(resumed, true)
        try await second.send("two")
        let reply = try await second.receive()
        XCTAssertEqual(reply.text, "two")
        await first.close()
        await second.close()
        XCTAssertEqual(first.group.count, 0)
        await listener.stop()
        echo.cancel()
    }

    func testMutualAuthentication() async throws {
        var server = pki.serverSecurity
        server.requireClientCertificate = true
        server.trustedRoots = .pem(file: pki.caPEM)
        let listener = try await tlsListener(server)
        let echo = startEcho(listener)
        // Without a client certificate the server refuses.
        do {
            let connection = try await client(listener.localAddress.port).initiate()
            // TLS 1.3: the client learns of the refusal on its first read.
            try await connection.send("x")
            _ = try await connection.receive()
            XCTFail("expected the server to refuse a client without a certificate")
        } catch is TransportError {
        }
        var withIdentity = pki.clientSecurity
        withIdentity.localIdentity = .pemFiles(certificate: pki.serverCert, key: pki.serverKey)
        let connection = try await client(listener.localAddress.port, security: withIdentity).initiate()
        try await connection.send("mutual")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "mutual")
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testALPNServerPicksByItsOwnPreference() async throws {
        var server = pki.serverSecurity
        server.applicationProtocols = ["taps/2", "taps/1"]
        let listener = try await tlsListener(server)
        let echo = startEcho(listener)
        var client = pki.clientSecurity
        client.applicationProtocols = ["taps/1", "taps/2"]
        let connection = try await self.client(listener.localAddress.port, security: client).initiate()
        let chosen = await connection.securityDetails?.applicationProtocol
        XCTAssertEqual(chosen, "taps/2")
        await connection.abort()

        var unknown = pki.clientSecurity
        unknown.applicationProtocols = ["other"]
        _ = await XCTAssertThrowsTransportError(.handshakeFailed) {
            try await self.client(listener.localAddress.port, security: unknown).initiate()
        }
        var empty = pki.clientSecurity
        empty.applicationProtocols = [""]
        _ = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await self.client(listener.localAddress.port, security: empty).initiate()
        }
        await listener.stop()
        echo.cancel()
    }

    func testServerPicksItsCertificateBySNI() async throws {
        let (other, otherPEM) = try SecurityParameters.Identity.selfSigned(commonName: "other.test", names: ["other.test"])
        var server = pki.serverSecurity
        server.identitiesByServerName = ["other.test": other]
        let listener = try await tlsListener(server)
        var accepted = listener.connections.makeAsyncIterator()

        var toOther = SecurityParameters.clientDefault
        toOther.trustedRoots = .pem(.bytes(otherPEM))
        toOther.serverName = "other.test"
        let first = try await client(listener.localAddress.port, host: "127.0.0.1", security: toOther).initiate()
        let firstDetails = await first.securityDetails
        XCTAssertEqual(firstDetails?.peerCertificateSubject, "/CN=other.test")
        let firstServer = await accepted.next()
        let requested = await firstServer?.securityDetails?.serverName
        XCTAssertEqual(requested, "other.test", "the server reads the name the client asked for")

        let second = try await client(listener.localAddress.port).initiate()
        let secondDetails = await second.securityDetails
        XCTAssertEqual(secondDetails?.peerCertificateSubject, "/CN=localhost", "other names get the default identity")
        let secondServer = await accepted.next()
        let secondName = await secondServer?.securityDetails?.serverName
        XCTAssertEqual(secondName, "localhost")

        for connection in [first, second] { await connection.abort() }
        await firstServer?.abort()
        await secondServer?.abort()
        await listener.stop()
    }
}
