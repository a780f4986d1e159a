import Foundation
import XCTest
@testable import Taps

/// Stack dtls-chunk-sctp with pre-shared parameters (KMId 0): usrsctp over loopback UDP with every
/// packet after the handshake in one DTLS chunk.
final class DTLSChunkSCTPTests: XCTestCase {
    static func security(_ keys: DTLSChunkPreSharedKeys?) -> SecurityParameters {
        var security = SecurityParameters()
        security.dtlsChunkKeys = keys
        return security
    }

    static func transport(_ configure: (inout TransportProperties) -> Void = { _ in }) -> TransportProperties {
        var transport = TransportProperties.reliableMessage
        transport.multistreaming = .require
        configure(&transport)
        return transport
    }

    static func listener(keys: DTLSChunkPreSharedKeys?, stacks: [ProtocolStack] = [.dtlsChunkSCTP],
                         configure: (inout TransportProperties) -> Void = { _ in }) async throws -> Listener {
        var server = Preconnection(local: .loopback(), transport: transport(configure), security: keys == nil ? .disabled : security(keys))
        server.registry = StackRegistry(stacks: stacks)
        return try await server.listen()
    }

    static func client(_ port: UInt16, keys: DTLSChunkPreSharedKeys?, stacks: [ProtocolStack] = [.dtlsChunkSCTP],
                       lossy: LossyPath? = LossyPath(), configure: (inout TransportProperties) -> Void = { _ in }) -> Preconnection {
        var client = Preconnection(remote: .loopback(port: port), transport: transport(configure),
                                   security: keys == nil ? .disabled : security(keys))
        client.registry = StackRegistry(stacks: stacks)
        client.lossyPath = lossy
        return client
    }

    /// What the DTLS chunk of a connection's association agreed and counted (public API).
    static func chunkState(of connection: Connection) async throws -> DTLSChunkStatus {
        let status = await connection.dtlsChunkStatus
        return try XCTUnwrap(status, "no DTLS chunk under the connection")
    }

    func testMessagesOnSeveralStreamsTravelProtectedAndNeverInClear() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Self.listener(keys: keys)
        XCTAssertEqual(listener.stack.name, "dtls-chunk-sctp")
        let echo = startEcho(listener)
        let first = try await Self.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
        XCTAssertEqual(first.stack.name, "dtls-chunk-sctp")
        let wire = try await watchWire(of: first)
        let second = try await first.clone()
        for (index, connection) in [first, second].enumerated() {
            for size in [5, 1_200, 16_384, 300_000] {
                let marker = Array("secret-\(index)-\(size)-".utf8)
                let payload = marker + (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ index) }
                try await connection.send(payload)
                let reply = try await connection.receive()
                XCTAssertEqual(reply.content, payload, "stream \(index), \(size) bytes")
            }
        }
        // Nothing of the application's in clear, and every datagram since is one DTLS chunk.
        XCTAssertGreaterThan(wire.count, 20)
        XCTAssertFalse(wire.contains(Array("secret-".utf8)))
        XCTAssertTrue(wire.all { $0.count >= 16 && $0[12] == 0x41 }, "a datagram without a DTLS chunk left after the handshake")
        let state = try await Self.chunkState(of: first)
        XCTAssertTrue(state.requiresProtection)
        XCTAssertEqual(state.epochCounters[DTLSKeyContextID(epoch: 3)]?.encryptions, state.counters.sentProtected)
        let clientCounters = state.counters
        XCTAssertGreaterThan(clientCounters.sentProtected, 20)
        XCTAssertGreaterThan(clientCounters.receivedProtected, 20)
        XCTAssertEqual(clientCounters.aeadFailures, 0)
        XCTAssertEqual(state.agreement?.method, .preSharedParameters)
        XCTAssertEqual(state.agreement?.role, .client, "the listener offers both roles and the client only the client role")
        await first.close()
        await second.close()
        await listener.stop()
        echo.cancel()
    }

    /// usrsctp gets a smaller MTU, so protected packets fit the path (SCTP packets at most the path
    /// MTU less IPv6 and UDP headers) and a record never carries more than 2^14 bytes of chunks.
    func testProtectedPacketsFitThePathMTU() async throws {
        for mtu in [1280, 16_384, 65_535] {
            // At most the path's packet, and at most one record of 2^14 bytes of chunks with its overhead.
            let bound = min(mtu - SCTPOptions.headerOverhead, SCTPPacket.commonHeaderLength + DTLSChunkProtection.maximumPlaintext + DTLSChunkProtection.maximumOverhead)
            let keys = DTLSChunkPreSharedKeys.random()
            let setMTU = { (transport: inout TransportProperties) in transport.sctp.pathMTU = mtu }
            let listener = try await Self.listener(keys: keys, configure: setMTU)
            let echo = startEcho(listener)
            let connection = try await Self.client(listener.localAddress.port, keys: keys, configure: setMTU).initiate(timeout: .seconds(10))
            let wire = try await watchWire(of: connection)
            let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0) }
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertEqual(reply.content, payload)
            XCTAssertLessThanOrEqual(wire.largest, bound, "MTU \(mtu)")
            XCTAssertGreaterThan(wire.largest, bound - 200, "MTU \(mtu): packets are filled")
            await connection.close()
            await listener.stop()
            echo.cancel()
        }
    }

    func testEverySuiteCarriesTheApplicationsBytes() async throws {
        for suite in DTLSChunkCipherSuite.allCases {
            let keys = DTLSChunkPreSharedKeys.random(cipherSuite: suite, restart: false)
            let listener = try await Self.listener(keys: keys)
            let echo = startEcho(listener)
            let connection = try await Self.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
            try await connection.send("over \(suite)")
            let reply = try await connection.receive()
            XCTAssertEqual(reply.text, "over \(suite)")
            let details = await connection.securityDetails
            XCTAssertEqual(details?.cipherSuite, suite.description)
            XCTAssertEqual(details?.protocolVersion.hasPrefix("DTLSv1.3"), true)
            await connection.close()
            await listener.stop()
            echo.cancel()
        }
    }

    func testWrongKeysFailBothEndsWithATypedErrorAndDeliverNothing() async throws {
        let listener = try await Self.listener(keys: .random())
        let delivered = Task { () -> Int in
            var count = 0
            for await _ in listener.connections { count += 1 }
            return count
        }
        let started = ContinuousClock.now
        let client = Self.client(listener.localAddress.port, keys: .random())
        let error = await XCTAssertThrowsTransportError(.handshakeFailed) { try await client.initiate(timeout: .seconds(20)) }
        XCTAssertTrue(error?.message.contains("keys differ") == true, "\(String(describing: error))")
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(15))
        // The listener's end gave up too, and never handed a connection to the application.
        let failed = try await listener.failedEstablishments(within: .seconds(10))
        XCTAssertEqual(failed, 1)
        let serverError = await listener.lastEstablishmentError
        XCTAssertEqual(serverError?.code, .handshakeFailed, "\(String(describing: serverError))")
        await listener.stop()
        let count = await delivered.value
        XCTAssertEqual(count, 0)
    }

    func testKeyManagementMessagesNeverReachTheApplication() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Self.listener(keys: keys)
        var incoming = listener.connections.makeAsyncIterator()
        let client = try await Self.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
        // The application cannot use PPID 4242 on this stack.
        var reserved = MessageContext()
        reserved.properties.sctpPayloadProtocolIdentifier = 4242
        await XCTAssertThrowsTransportError(.invalidArgument) { try await client.send(Array("mine".utf8), context: reserved) }
        // Key management messages from the peer, on the connection's stream and as the first message
        // of a stream nobody opened yet, then application data.
        try await client.loop.submit {
            client.assumeIsolated { connection in
                let stream = connection.layer.layerChain.lazy.compactMap { $0 as? SCTPStreamLayer }.first
                stream?.association.sendKeyManagement(Array("km on stream 0".utf8), on: 0)
                stream?.association.sendKeyManagement(Array("km opening stream 6".utf8), on: 6)
            }
        }
        try await client.send("application data")
        let first = await incoming.next()
        let server = try XCTUnwrap(first)
        let message = try await server.receive()
        XCTAssertEqual(message.text, "application data")
        let dropped = try await server.loop.submit {
            server.assumeIsolated { connection in
                connection.layer.layerChain.lazy.compactMap { ($0 as? SCTPStreamLayer)?.association.path.chunkFilter }.first?.keyManagementMessagesDropped
            }
        }
        XCTAssertEqual(dropped, 2)
        // No connection appeared for stream 6.
        let another = Task { await incoming.next() }
        try await Task.sleep(for: .milliseconds(300))
        another.cancel()
        await client.close()
        await listener.stop()
        let extra = await another.value
        XCTAssertNil(extra)
    }

    /// Runs `body` on the association under `connection`, on its loop.
    static func onAssociation<T: Sendable>(of connection: Connection, _ body: @escaping @Sendable (SCTPAssociation) throws -> T) async throws -> T {
        try await connection.loop.submit {
            try connection.assumeIsolated { connection in
                let stream = try XCTUnwrap(connection.layer.layerChain.lazy.compactMap { $0 as? SCTPStreamLayer }.first)
                return try body(stream.association)
            }
        }
    }

    /// The draft's abstract API on the association, driven directly over real sockets: both ends
    /// install epoch 4 receive keys, then epoch 4 send keys (each end's receive keys before the
    /// peer's send keys), then destroy epoch 3; data flows throughout.
    func testRekeyingThroughTheAbstractAPIKeepsTheAssociationRunning() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await Self.listener(keys: keys)
        var incoming = listener.connections.makeAsyncIterator()
        let client = try await Self.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
        try await client.send("epoch 3")
        let first = await incoming.next()
        let server = try XCTUnwrap(first)
        let greeting = try await server.receive()
        XCTAssertEqual(greeting.text, "epoch 3")

        let agreement = try await Self.onAssociation(of: server) { $0.dtlsChunkAgreement }
        XCTAssertEqual(agreement?.role, .server)
        XCTAssertEqual(agreement?.downgradePreventionData.prefix(2), [0x80, 0x06], "the client's parameter first")
        let next = DTLSChunkPreSharedKeys.random(cipherSuite: .chacha20Poly1305SHA256, restart: false)
        let epoch3 = DTLSKeyContextID(epoch: 3), epoch4 = DTLSKeyContextID(epoch: 4)
        try await Self.onAssociation(of: server) { try $0.establishReceiveKeys(next.clientToServer, suite: next.cipherSuite, for: epoch4) }
        try await Self.onAssociation(of: client) { try $0.establishReceiveKeys(next.serverToClient, suite: next.cipherSuite, for: epoch4) }
        try await Self.onAssociation(of: client) { try $0.establishSendKeys(next.clientToServer, suite: next.cipherSuite, for: epoch4) }
        try await Self.onAssociation(of: server) { try $0.establishSendKeys(next.serverToClient, suite: next.cipherSuite, for: epoch4) }
        for index in 0..<20 {
            try await client.send("epoch 4 #\(index)")
            let message = try await server.receive()
            XCTAssertEqual(message.text, "epoch 4 #\(index)")
            try await server.send("back \(index)")
            let reply = try await client.receive()
            XCTAssertEqual(reply.text, "back \(index)")
        }
        // Epoch 3 is gone both ways; the association runs on epoch 4 alone.
        for connection in [client, server] {
            let destroyed = try await Self.onAssociation(of: connection) { try $0.destroyReceiveKeys(for: epoch3) && $0.destroySendKeys(for: epoch3) }
            XCTAssertTrue(destroyed)
        }
        try await client.send("after epoch 3")
        let after = try await server.receive()
        XCTAssertEqual(after.text, "after epoch 3")
        let counters = try await Self.onAssociation(of: server) { $0.dtlsChunkStatus?.epochCounters }
        let epoch4Counters = try XCTUnwrap(counters?[epoch4])
        XCTAssertGreaterThanOrEqual(epoch4Counters.encryptions, 20)
        XCTAssertGreaterThanOrEqual(epoch4Counters.decryptions, 21)
        XCTAssertGreaterThan(try XCTUnwrap(counters?[epoch3]).decryptions, 0, "epoch 3's counters outlive its keys")
        // Out-of-order epochs are refused.
        let skipped = try await Self.onAssociation(of: server) { association -> Bool in
            do { try association.establishSendKeys(next.serverToClient, suite: next.cipherSuite, for: DTLSKeyContextID(epoch: 6)) } catch { return true }
            return false
        }
        XCTAssertTrue(skipped)
        await client.close()
        await listener.stop()
    }

    /// Churn: many more associations than the listener keeps unestablished peers (1,024), each set
    /// up and aborted at once; with pre-shared keys the client is ready before the listener has
    /// accepted, so many end unaccepted. Such an association must not hold its peer's path until the
    /// setup timeout, or the listener refuses new peers for seconds.
    func testThousandsOfQuickAssociationsDoNotExhaustTheListener() async throws {
        var keys = DTLSChunkPreSharedKeys.random()
        keys.allowsReuseAcrossAssociations = true  // thousands of associations; the traffic is not secret
        let listener = try await Self.listener(keys: keys)
        let accepting = Task { for await connection in listener.connections { await connection.abort() } }
        let client = Self.client(listener.localAddress.port, keys: keys, lossy: nil)
        for _ in 0..<2_500 {
            let connection = try await client.initiate(timeout: .seconds(5))
            await connection.abortGroup()
        }
        await listener.stop()
        accepting.cancel()
    }

    /// Every association starts at sequence number 0, so pre-shared keys protect one association per
    /// process: a second client under the same keys is refused before it sends under them, and a
    /// listener answers a second association under keys it already sent under with an ABORT; the
    /// first association goes on. Only an explicit opt-out lets keys serve several.
    func testPreSharedKeysProtectOneAssociationUnlessReuseIsAllowed() async throws {
        // The listener's keys: a second association under them is answered with an ABORT.
        let keys = DTLSChunkPreSharedKeys.random()
        var clientReusing = keys
        clientReusing.allowsReuseAcrossAssociations = true
        let listener = try await Self.listener(keys: keys)
        let echo = startEcho(listener)
        let first = try await Self.client(listener.localAddress.port, keys: clientReusing, lossy: nil).initiate(timeout: .seconds(10))
        let refusal = await XCTAssertThrowsTransportError(.connectionRefused) {
            try await Self.client(listener.localAddress.port, keys: clientReusing, lossy: nil).initiate(timeout: .seconds(10))
        }
        XCTAssertTrue(refusal?.message.contains("error cause 101") ?? false,
                      "the listener has no unused pre-shared keys for the second association: \(String(describing: refusal))")
        try await first.send("still protected")
        let reply = try await first.receive()
        XCTAssertEqual(reply.text, "still protected", "the first association goes on")
        await first.abort()
        await listener.stop()
        echo.cancel()

        // The client's keys: its second association fails before it sends under them.
        let clientKeys = DTLSChunkPreSharedKeys.random()
        var serverReusing = clientKeys
        serverReusing.allowsReuseAcrossAssociations = true
        let open = try await Self.listener(keys: serverReusing)
        let openEcho = startEcho(open)
        let once = try await Self.client(open.localAddress.port, keys: clientKeys, lossy: nil).initiate(timeout: .seconds(10))
        let error = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await Self.client(open.localAddress.port, keys: clientKeys, lossy: nil).initiate(timeout: .seconds(10))
        }
        XCTAssertTrue(error?.message.contains("repeat AEAD nonces") ?? false, "\(String(describing: error))")
        await once.abort()

        // Both ends allowing it: several associations under one set of keys.
        for index in 0..<2 {
            let connection = try await Self.client(open.localAddress.port, keys: serverReusing, lossy: nil).initiate(timeout: .seconds(10))
            try await connection.send("reused \(index)")
            let echoed = try await connection.receive()
            XCTAssertEqual(echoed.text, "reused \(index)")
            await connection.abort()
        }
        await open.stop()
        openEcho.cancel()
    }

    func testKeysOfTheWrongLengthAreRefusedBeforeAnyPacket() async throws {
        var keys = DTLSChunkPreSharedKeys.random()
        keys.clientToServer.key.removeLast()
        let client = Self.client(9, keys: keys)
        await XCTAssertThrowsTransportError(.invalidArgument) { try await client.initiate(timeout: .seconds(2)) }
        var narrow = Self.security(.random())
        narrow.dtlsChunkReplayWindow = 0
        var narrowClient = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: narrow)
        narrowClient.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        await XCTAssertThrowsTransportError(.invalidArgument) { try await narrowClient.initiate(timeout: .seconds(2)) }
        var reused = DTLSChunkPreSharedKeys.random()
        reused.serverToClient.key = reused.clientToServer.key
        await XCTAssertThrowsTransportError(.invalidArgument) { try await Self.listener(keys: reused) }
    }

    func testSelectionNeedsKeysAndExplainsWhy() throws {
        var security = SecurityParameters()
        let without = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security).candidateStacks()
        let report = try XCTUnwrap(without.first { $0.stack.name == "dtls-chunk-sctp" })
        XCTAssertFalse(report.qualifies)
        XCTAssertTrue(report.reasons.contains { $0.contains("dtlsChunkKeys") && $0.contains("identity") }, "\(report.reasons)")
        security.dtlsChunkKeys = .random()
        let with = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security).candidateStacks()
        XCTAssertEqual(with.first { $0.rank == 0 }?.stack.name, "dtls-chunk-sctp", with.table)
        let offered = try XCTUnwrap(with.first { $0.stack.name == "dtls-chunk-sctp" }).reasons
        XCTAssertTrue(offered.contains("DTLS chunk key management offered: pre-shared parameters (KMId 0)"), "\(offered)")
        // With an identity and roots too, DTLS 1.3 comes first, then TLS 1.3.
        security.localIdentity = DTLS13EngineTests.pki.identity("rsa")
        security.trustedRoots = .pem(file: DTLS13EngineTests.pki.caPEM)
        let both = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security).candidateStacks()
        let bothReasons = try XCTUnwrap(both.first { $0.stack.name == "dtls-chunk-sctp" }).reasons
        XCTAssertTrue(bothReasons.contains("DTLS chunk key management offered: DTLS 1.3 (KMId 193), TLS 1.3 (KMId 192), pre-shared parameters (KMId 0)"), "\(bothReasons)")
    }

    /// KU, IV, SSKE and CM need the DTLS 1.3 key management's handshakes: required (or, for IV,
    /// configured as a trust verifier), each rules pre-shared parameters out with its own reason,
    /// and none rules DTLS 1.3 out.
    func testInterfacesThatNeedAHandshakeRuleOutPreSharedParameters() throws {
        func report(_ configure: (inout SecurityParameters) -> Void) throws -> CandidateReport {
            var security = SecurityParameters.clientDefault
            security.dtlsChunkKeys = .random()
            configure(&security)
            var preconnection = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security)
            preconnection.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
            return try XCTUnwrap(preconnection.candidateStacks().first)
        }
        let pin = try TrustVerifier.publicKeySHA256(ofCertificate: .file(DTLS13EngineTests.pki.serverCert))
        let cases: [(String, (inout SecurityParameters) -> Void)] = [
            ("KU required: the DTLS chunk rekeys only with DTLS 1.3", { $0.require(.keyUpdate) }),
            ("IV required: the DTLS chunk validates a peer's certificate only with DTLS 1.3", { $0.trustVerifier = .pinning(publicKeySHA256: [pin]) }),
            ("SSKE required: the DTLS chunk exports keying material only with DTLS 1.3", { $0.require(.sharedSecretKeyExport) }),
            ("CM required: the DTLS chunk resumes sessions only with DTLS 1.3", { $0.require(.sessionCache) }),
        ]
        for (reason, configure) in cases {
            let pskOnly = try report(configure)
            XCTAssertFalse(pskOnly.qualifies, reason)
            XCTAssertTrue(pskOnly.reasons.contains { $0.contains(reason) }, "\(pskOnly.reasons)")
            let withDTLS13 = try report { security in
                configure(&security)
                security.localIdentity = DTLS13EngineTests.pki.identity("rsa")
                security.trustedRoots = .pem(file: DTLS13EngineTests.pki.caPEM)
            }
            XCTAssertTrue(withDTLS13.qualifies, "\(reason): \(withDTLS13.reasons)")
        }
    }

    func testAStrictListenerAbortsAPlainSCTPClientWithMissingDTLSChunkSupport() async throws {
        let listener = try await Self.listener(keys: .random())
        let client = Self.client(listener.localAddress.port, keys: nil, stacks: [.sctp])
        let started = ContinuousClock.now
        let error = await XCTAssertThrowsTransportError(.connectionRefused) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "the ABORT ends the attempt at once")
        XCTAssertTrue(error?.message.contains("error cause 100") == true, "\(String(describing: error))")
        await listener.stop()
    }

    func testInLooseModePlainSCTPPeersGoOnWithoutSecurity() async throws {
        var loose = Self.security(.random())
        loose.dtlsChunkRequired = false
        // A loose listener and a plain sctp client.
        var server = Preconnection(local: .loopback(), transport: Self.transport(), security: loose)
        server.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        let listener = try await server.listen()
        let echo = startEcho(listener)
        let plain = try await Self.client(listener.localAddress.port, keys: nil, stacks: [.sctp]).initiate(timeout: .seconds(10))
        try await plain.send("in clear, as both agreed")
        let reply = try await plain.receive()
        XCTAssertEqual(reply.text, "in clear, as both agreed")
        await plain.close()
        await listener.stop()
        echo.cancel()

        // A loose client and a plain sctp listener.
        let plainListener = try await Self.listener(keys: nil, stacks: [.sctp])
        let plainEcho = startEcho(plainListener)
        var client = Preconnection(remote: .loopback(port: plainListener.localAddress.port), transport: Self.transport(), security: loose)
        client.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        let connection = try await client.initiate(timeout: .seconds(10))
        try await connection.send("loose")
        let echoed = try await connection.receive()
        XCTAssertEqual(echoed.text, "loose")
        let details = await connection.securityDetails
        XCTAssertNil(details, "plain SCTP was agreed: no security to report")
        await connection.close()
        await plainListener.stop()
        plainEcho.cancel()

        // Two loose ends still agree on the DTLS chunk.
        let keys = DTLSChunkPreSharedKeys.random()
        var bothLoose = Self.security(keys)
        bothLoose.dtlsChunkRequired = false
        var looseServer = Preconnection(local: .loopback(), transport: Self.transport(), security: bothLoose)
        looseServer.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        let looseListener = try await looseServer.listen()
        let looseEcho = startEcho(looseListener)
        var looseClient = Preconnection(remote: .loopback(port: looseListener.localAddress.port), transport: Self.transport(), security: bothLoose)
        looseClient.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        let protected = try await looseClient.initiate(timeout: .seconds(10))
        try await protected.send("protected")
        _ = try await protected.receive()
        let protectedDetails = await protected.securityDetails
        XCTAssertEqual(protectedDetails?.cipherSuite, "TLS_AES_128_GCM_SHA256")
        await protected.close()
        await looseListener.stop()
        looseEcho.cancel()
    }

    func testAStrictClientRefusesAPlainSCTPListener() async throws {
        let listener = try await Self.listener(keys: nil, stacks: [.sctp])
        let client = Self.client(listener.localAddress.port, keys: .random())
        let error = await XCTAssertThrowsTransportError(.handshakeFailed) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("cause 100") == true, "\(String(describing: error))")
        await listener.stop()
    }
}
