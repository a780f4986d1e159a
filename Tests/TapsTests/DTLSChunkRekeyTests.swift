import Foundation
import Synchronization
import XCTest
@testable import Taps

/// Rekeying of dtls-chunk-sctp with DTLS 1.3 key management (draft-westerlund, "Rekeying"): a new
/// DTLS connection on the next DCI replaces the keys, the epoch advances, the old connection goes
/// after the drain rule, over loopback.
class DTLSChunkRekeyTests: XCTestCase {
    /// The handshake method both ends run; a subclass runs the tests with TLS 1.3.
    class var ends: HandshakeEnds { HandshakeEnds(method: .dtls13) }

    /// What the key management of a connection's association reports.
    struct Progress: Sendable, Equatable {
        var rekeys: Int
        var connectionIndex: UInt64
        var sendEpoch: UInt64?
        var simultaneousStarts: Int
        var primaryReceiveEpochs: [UInt64]
    }

    static func progress(_ connection: Connection) async throws -> Progress {
        let progress = try await connection.loop.submit {
            connection.assumeIsolated { connection -> Progress? in
                guard let association = connection.layer.layerChain.lazy.compactMap({ ($0 as? SCTPStreamLayer)?.association }).first,
                      let keyManagement = association.keyManagement, let filter = association.path.chunkFilter else { return nil }
                return Progress(rekeys: keyManagement.rekeys, connectionIndex: keyManagement.connectionIndex,
                                sendEpoch: filter.protection.sendKeyInUse?.epoch, simultaneousStarts: keyManagement.simultaneousStarts,
                                primaryReceiveEpochs: filter.protection.installedReceiveContexts.filter { !$0.restart }.map(\.epoch).sorted())
            }
        }
        return try XCTUnwrap(progress)
    }

    /// Waits up to 10 s for `condition` on the connection's progress.
    static func waitFor(_ connection: Connection, _ condition: (Progress) -> Bool) async throws -> Progress {
        var last = try await progress(connection)
        for _ in 0..<200 where !condition(last) {
            try await Task.sleep(for: .milliseconds(50))
            last = try await progress(connection)
        }
        return last
    }

    /// Fewer bytes than a packet with a ClientHello: BoringSSL's offers X25519MLKEM768 and fills a
    /// large packet; OpenSSL 3.0's has an X25519 share only.
    class var clientHelloPacketSize: Int { 1_000 }

    class func security(server: Bool, rekey: DTLSChunkRekeyPolicy = .onDemand) -> SecurityParameters {
        var security = Self.ends.security(server: server)
        security.dtlsChunkRekey = rekey
        return security
    }

    func testUpdateKeysReplacesTheKeysTheEpochAdvancesAndTheOldConnectionIsRetired() async throws {
        let listener = try await Self.ends.listener(Self.security(server: true))
        let client = try await Self.ends.client(listener.localAddress.port, Self.security(server: false)).initiate(timeout: .seconds(10))
        let server = try await listener.firstConnection()
        let clientEvents = await client.events(), serverEvents = await server.events()
        try await client.send("before")
        let before = try await server.receive()
        XCTAssertEqual(before.text, "before")
        let initial = try await Self.progress(client)
        XCTAssertEqual(initial, Progress(rekeys: 0, connectionIndex: 3, sendEpoch: 3, simultaneousStarts: 0, primaryReceiveEpochs: [3]))

        try await client.updateKeys()
        for round in 0..<3 {
            try await client.send("during \(round)")
            let during = try await server.receive()
            XCTAssertEqual(during.text, "during \(round)")
            try await server.send("reply \(round)")
            let reply = try await client.receive()
            XCTAssertEqual(reply.text, "reply \(round)")
        }
        // Both ends use epoch 4, and once drained only its receive keys are left.
        let done: (Progress) -> Bool = { $0.sendEpoch == 4 && $0.primaryReceiveEpochs == [4] }
        let clientAfter = try await Self.waitFor(client, done), serverAfter = try await Self.waitFor(server, done)
        XCTAssertEqual(clientAfter, Progress(rekeys: 1, connectionIndex: 4, sendEpoch: 4, simultaneousStarts: 0, primaryReceiveEpochs: [4]))
        XCTAssertEqual(serverAfter, Progress(rekeys: 1, connectionIndex: 4, sendEpoch: 4, simultaneousStarts: 0, primaryReceiveEpochs: [4]))
        let status = await client.dtlsChunkStatus
        XCTAssertEqual(status?.sendKeyContext, DTLSKeyContextID(epoch: 4))
        XCTAssertEqual(status?.rekeys, 1)
        XCTAssertGreaterThan(status?.epochCounters[DTLSKeyContextID(epoch: 4)]?.encryptions ?? 0, 0)

        try await client.send("after")
        let after = try await server.receive()
        XCTAssertEqual(after.text, "after")
        await client.close()
        await server.close()
        var clientUpdates: [Bool] = [], serverUpdates: [Bool] = []
        for await event in clientEvents { if case .keysUpdated(let byPeer) = event { clientUpdates.append(byPeer) } }
        for await event in serverEvents { if case .keysUpdated(let byPeer) = event { serverUpdates.append(byPeer) } }
        XCTAssertEqual(clientUpdates, [false])
        XCTAssertEqual(serverUpdates, [true])
        await listener.stop()
    }

    /// 50 MB over two streams with a rekey every megabyte each end sends: nothing lost, nothing out
    /// of order, and the epoch far past the first.
    func testRekeyingEveryMegabyteDuringFiftyMegabytesLosesNothing() async throws {
        let policy = DTLSChunkRekeyPolicy(afterBytes: 1 << 20, afterPackets: nil, afterTime: nil)
        let listener = try await Self.ends.listener(Self.security(server: true, rekey: policy))
        let client = Self.ends.client(listener.localAddress.port, Self.security(server: false, rekey: policy))
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: client, to: listener)
        let total = 25 * 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let received = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<2, total: total)
        try await sending
        XCTAssertEqual(received, [total, total])
        let progress = try await Self.progress(clients[0])
        XCTAssertGreaterThanOrEqual(progress.rekeys, 20, "about one rekey per megabyte sent")
        XCTAssertEqual(progress.connectionIndex, 3 + UInt64(progress.rekeys))
        XCTAssertLessThanOrEqual(progress.primaryReceiveEpochs.count, 2, "at most two key management connections at once")
        for connection in clients { await connection.close() }
        await listener.stop()
    }

    /// Both ends start a rekey at once. The client's ClientHello is dropped on the wire once, so the
    /// server's own rekey is under way when the retransmission arrives: the ClientHello of the end
    /// that was client of the connection in use (the client) goes on, the server drops its own.
    func testSimultaneousRekeysFromBothEndsEndInOneNewConnection() async throws {
        let listener = try await Self.ends.listener(Self.security(server: true))
        var preconnection = Self.ends.client(listener.localAddress.port, Self.security(server: false))
        let dropNextLarge = Mutex(false)
        let dropped = Mutex(0)
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            // Nothing else this big is in flight.
            guard outgoing, datagram.count > Self.clientHelloPacketSize, dropNextLarge.withLock({ let drop = $0; $0 = false; return drop }) else { return [datagram] }
            dropped.withLock { $0 += 1 }
            return []
        }
        preconnection.lossyPath = lossy
        let client = try await preconnection.initiate(timeout: .seconds(10))
        let server = try await listener.firstConnection()
        try await client.send("hello")
        _ = try await server.receive()

        dropNextLarge.withLock { $0 = true }
        try await client.updateKeys()
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(dropped.withLock { $0 }, 1, "the client's ClientHello was held back")
        try await server.updateKeys()

        let done: (Progress) -> Bool = { $0.sendEpoch == 4 && $0.primaryReceiveEpochs == [4] }
        let clientAfter = try await Self.waitFor(client, done), serverAfter = try await Self.waitFor(server, done)
        XCTAssertEqual(clientAfter.rekeys, 1)
        XCTAssertEqual(serverAfter.rekeys, 1, "one new connection, not two")
        XCTAssertEqual(clientAfter.sendEpoch, 4)
        XCTAssertEqual(serverAfter.sendEpoch, 4)
        XCTAssertEqual(clientAfter.simultaneousStarts, 1, "the client saw the server's ClientHello while its own was under way")
        XCTAssertEqual(serverAfter.simultaneousStarts, 1, "the server gave its own up")
        try await server.send("still here")
        let reply = try await client.receive()
        XCTAssertEqual(reply.text, "still here")
        await client.close()
        await listener.stop()
    }

    func testRekeyingGetsThroughALossyPath() async throws {
        let policy = DTLSChunkRekeyPolicy(afterBytes: 128 * 1024, afterPackets: nil, afterTime: nil)
        // Both ends recover lost packets in tens of milliseconds: the handshake's answers come from the listener.
        var server = Preconnection(local: .loopback(), transport: DTLSChunkSCTPTests.transport(TLSSCTP.fastRecovery),
                                   security: Self.security(server: true, rekey: policy))
        server.registry = StackRegistry(stacks: [.dtlsChunkSCTP])
        let listener = try await server.listen()
        var client = Self.ends.client(listener.localAddress.port, Self.security(server: false, rekey: policy))
        TLSSCTP.fastRecovery(&client.transport)
        client.lossyPath = LossyPath(lossRate: 0.05, reorderRate: 0.05, duplicateRate: 0.01, corruptionRate: 0.01, seed: 11)
        let (clients, servers) = try await TLSSCTP.openStreams(2, from: client, to: listener)
        let total = 2 * 1024 * 1024
        async let sending: Void = TLSSCTP.sendPatterns(on: clients, total: total)
        let received = try await TLSSCTP.receivePatterns(on: servers, streams: 0..<2, total: total)
        try await sending
        XCTAssertEqual(received, [total, total])
        let progress = try await Self.progress(clients[0])
        // Lost handshake packets and acknowledgements wait for retransmission, so rekeys come
        // slower than the budget asks; several must have happened mid-transfer.
        XCTAssertGreaterThanOrEqual(progress.rekeys, 3)
        let faults = try await lossyCounters(of: clients[0])
        XCTAssertGreaterThan(faults.dropped, 0)
        for connection in clients { await connection.abort() }
        await listener.stop()
    }

    /// A certificate of the same CA for another name on the rekey: the client refuses the change of
    /// identity and the association ends; nothing sent afterwards is delivered.
    func testAnotherIdentityOnRekeyEndsTheAssociation() async throws {
        let listener = try await Self.ends.listener(Self.security(server: true))
        let client = try await Self.ends.client(listener.localAddress.port, Self.security(server: false)).initiate(timeout: .seconds(10))
        let server = try await listener.firstConnection()
        try await replaceServerIdentity(of: server, with: "renamed")
        try await client.updateKeys()
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { _ = try await client.receive() }
        XCTAssertTrue(error?.message.contains("another identity") == true, String(describing: error))
        do {
            let message = try await server.receive()
            XCTFail("the server's end must end too, not deliver \(message)")
        } catch {}
        await listener.stop()
    }

    /// A renewed certificate (another key, the same name) is accepted on rekey.
    func testARenewedCertificateWithTheSameNameIsAcceptedOnRekey() async throws {
        let listener = try await Self.ends.listener(Self.security(server: true))
        let client = try await Self.ends.client(listener.localAddress.port, Self.security(server: false)).initiate(timeout: .seconds(10))
        let server = try await listener.firstConnection()
        try await replaceServerIdentity(of: server, with: "rsa")
        try await client.updateKeys()
        let after = try await Self.waitFor(client) { $0.sendEpoch == 4 }
        XCTAssertEqual(after.rekeys, 1)
        try await client.send("renewed")
        let message = try await server.receive()
        XCTAssertEqual(message.text, "renewed")
        await client.close()
        await listener.stop()
    }

    func testPreSharedParametersAreNotRekeyedInBand() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        let listener = try await DTLSChunkSCTPTests.listener(keys: keys)
        let client = try await DTLSChunkSCTPTests.client(listener.localAddress.port, keys: keys).initiate(timeout: .seconds(10))
        await XCTAssertThrowsTransportError(.notSupported) { try await client.updateKeys() }
        await client.close()
        await listener.stop()
    }

    /// A required KU keeps dtls-chunk-sctp with DTLS 1.3 key management and rules it out with
    /// pre-shared parameters alone, saying why.
    func testRequiredKeyUpdateNeedsDTLS13KeyManagement() throws {
        var psk = SecurityParameters()
        psk.dtlsChunkKeys = .random()
        psk.require(.keyUpdate)
        let pskOnly = Preconnection(remote: .loopback(port: 9), transport: DTLSChunkSCTPTests.transport(), security: psk).candidateStacks()
        let refused = try XCTUnwrap(pskOnly.first { $0.stack == .dtlsChunkSCTP })
        XCTAssertFalse(refused.qualifies)
        XCTAssertTrue(refused.reasons.contains { $0.contains("rekeys only with DTLS 1.3") }, "\(refused.reasons)")
        var dtls13 = Self.security(server: false)
        dtls13.require(.keyUpdate)
        let withIdentity = Preconnection(remote: .loopback(port: 9), transport: DTLSChunkSCTPTests.transport(), security: dtls13).candidateStacks()
        let chosen = try XCTUnwrap(withIdentity.first { $0.stack == .dtlsChunkSCTP })
        XCTAssertTrue(chosen.qualifies, "\(chosen.reasons)")
    }

    /// `dtlsChunkKeyManagement` picks the offered methods: with an identity and keys configured,
    /// offering only KMId 0 agrees on it; a listed method without its configuration is refused
    /// before any packet.
    func testTheApplicationChoosesTheOfferedMethods() async throws {
        let keys = DTLSChunkPreSharedKeys.random()
        var server = Self.security(server: true), client = Self.security(server: false)
        server.dtlsChunkKeys = keys
        client.dtlsChunkKeys = keys
        server.dtlsChunkKeyManagement = nil
        client.dtlsChunkKeyManagement = [.preSharedParameters]
        let listener = try await Self.ends.listener(server)
        let echo = startEcho(listener)
        let connection = try await Self.ends.client(listener.localAddress.port, client).initiate(timeout: .seconds(10))
        let status = await connection.dtlsChunkStatus
        XCTAssertEqual(status?.agreement?.method, .preSharedParameters)
        try await connection.send("psk chosen")
        let reply = try await connection.receive()
        XCTAssertEqual(reply.text, "psk chosen")
        await connection.close()
        await listener.stop()
        echo.cancel()

        var unconfigured = SecurityParameters()
        unconfigured.dtlsChunkKeys = keys
        unconfigured.dtlsChunkKeyManagement = [.dtls13]
        let refused = Self.ends.client(9, unconfigured)
        let error = await XCTAssertThrowsTransportError(.noCandidate) { try await refused.initiate(timeout: .seconds(5)) }
        XCTAssertTrue(error?.message.contains("lists DTLS 1.3 (KMId 193), which the parameters do not configure") == true, String(describing: error))
    }

    private func replaceServerIdentity(of server: Connection, with name: String) async throws {
        var security = Self.ends.security(server: true)
        security.localIdentity = TestPKI.shared.identity(name)
        let contexts = try XCTUnwrap(Self.ends.method == .tls13 ? try KeyManagementContexts(tls13: security) : try KeyManagementContexts(dtls13: security))
        let replaced = try await server.loop.submit {
            server.assumeIsolated { connection -> Bool in
                guard let association = connection.layer.layerChain.lazy.compactMap({ ($0 as? SCTPStreamLayer)?.association }).first else { return false }
                association.replaceKeyManagementContexts(contexts)
                return true
            }
        }
        XCTAssertTrue(replaced)
    }
}

/// The same with TLS 1.3 key management (draft-porfiri "Rekeying"). (Test discovery on Linux finds
/// only the methods a class declares itself.)
final class DTLSChunkTLS13RekeyTests: DTLSChunkRekeyTests {
    override class var ends: HandshakeEnds { HandshakeEnds(method: .tls13) }
    override class var clientHelloPacketSize: Int { 200 }
    override func testUpdateKeysReplacesTheKeysTheEpochAdvancesAndTheOldConnectionIsRetired() async throws {
        try await super.testUpdateKeysReplacesTheKeysTheEpochAdvancesAndTheOldConnectionIsRetired()
    }
    override func testRekeyingEveryMegabyteDuringFiftyMegabytesLosesNothing() async throws {
        try await super.testRekeyingEveryMegabyteDuringFiftyMegabytesLosesNothing()
    }
    override func testSimultaneousRekeysFromBothEndsEndInOneNewConnection() async throws {
        try await super.testSimultaneousRekeysFromBothEndsEndInOneNewConnection()
    }
    override func testRekeyingGetsThroughALossyPath() async throws {
        try await super.testRekeyingGetsThroughALossyPath()
    }
    override func testAnotherIdentityOnRekeyEndsTheAssociation() async throws {
        try await super.testAnotherIdentityOnRekeyEndsTheAssociation()
    }
    override func testARenewedCertificateWithTheSameNameIsAcceptedOnRekey() async throws {
        try await super.testARenewedCertificateWithTheSameNameIsAcceptedOnRekey()
    }
}
