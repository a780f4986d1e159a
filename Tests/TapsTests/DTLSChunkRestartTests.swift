import Foundation
import Synchronization
import XCTest
@testable import Taps

/// The protected SCTP restart of dtls-chunk-sctp with DTLS 1.3 key management (chunk draft "SCTP
/// Restart Considerations"): a client whose process dies comes back from the same port with the
/// restart context it exported, INIT and INIT ACK in clear, COOKIE ECHO and COOKIE ACK under the
/// restart context (R flag), data at once, then a fresh handshake whose epoch 3 keys and restart
/// context replace it. Over loopback, with the listener's association surviving the restart.
class DTLSChunkRestartTests: XCTestCase {
    /// The handshake method both ends run; `DTLSChunkTLS13RestartTests` runs every test with TLS 1.3.
    class var keyManagement: DTLSKeyManagementMethod { .dtls13 }

    /// What a connection's association protects with and holds.
    struct Keys: Sendable, Equatable {
        var sending: DTLSKeyContextID?
        var receiving: Set<DTLSKeyContextID>
        var sendingInstalled: Set<DTLSKeyContextID>
        /// The restart context a restart used still protects (the new one is not in its place).
        var underRestartContext: Bool
    }

    static func keys(of connection: Connection) async throws -> Keys {
        try await DTLSChunkSCTPTests.onAssociation(of: connection) { association in
            let filter = try XCTUnwrap(association.path.chunkFilter)
            return Keys(sending: filter.protection.sendKeyInUse, receiving: filter.protection.installedReceiveContexts,
                        sendingInstalled: filter.protection.installedSendContexts, underRestartContext: filter.restartedUnder != nil)
        }
    }

    /// Waits up to 10 s for `condition` on the connection's keys.
    static func waitFor(_ connection: Connection, _ condition: (Keys) -> Bool) async throws -> Keys {
        var last = try await keys(of: connection)
        for _ in 0..<200 where !condition(last) {
            try await Task.sleep(for: .milliseconds(50))
            last = try await keys(of: connection)
        }
        return last
    }

    static let settled = Keys(sending: DTLSKeyContextID(epoch: 3), receiving: [DTLSKeyContextID(epoch: 3), DTLSKeyContextID(restart: true, epoch: 3)],
                              sendingInstalled: [DTLSKeyContextID(epoch: 3), DTLSKeyContextID(restart: true, epoch: 3)], underRestartContext: false)

    /// A client from `localPort` whose path can be cut (nothing in or out: its process died), and
    /// whose writes are logged.
    class func client(to port: UInt16, from localPort: UInt16, restartContext: [UInt8]? = nil,
                      cut: PathCut? = nil, identity: String = "rsa") -> (Preconnection, WireLog) {
        var security = DTLSChunkDTLS13Tests.security(server: false)
        security.localIdentity = TestPKI.shared.identity(identity)
        security.dtlsChunkRekey = .onDemand
        security.dtlsChunkKeyManagement = [keyManagement]
        security.dtlsChunkRestartContext = restartContext
        var client = DTLSChunkDTLS13Tests.client(port, security)
        client.local = .loopback(port: localPort)
        let wire = WireLog()
        var lossy = LossyPath()
        lossy.rewriter = DatagramRewriter { datagram, outgoing in
            if cut?.isCut == true { return [] }
            if outgoing { wire.append(datagram) }
            return [datagram]
        }
        client.lossyPath = lossy
        return (client, wire)
    }

    class func listener() async throws -> Listener {
        var security = DTLSChunkDTLS13Tests.security(server: true)
        security.dtlsChunkRekey = .onDemand
        security.dtlsChunkKeyManagement = [keyManagement]
        return try await DTLSChunkDTLS13Tests.listener(security)
    }

    /// A listener and a client from a port of its own whose path can be cut, after one message:
    /// the listener's connection records its events.
    class func firstAssociation() async throws -> (Listener, localPort: UInt16, PathCut, client: Connection, server: Connection, EventLog) {
        let listener = try await Self.listener()
        let port = listener.localAddress.port
        let localPort = try await freePort(udp: true)
        let cut = PathCut()
        let first = try await Self.client(to: port, from: localPort, cut: cut).0.initiate(timeout: .seconds(10))
        try await first.send("before")
        let server = try await listener.firstConnection()
        let serverEvents = EventLog()
        await server.setEventHandler { serverEvents.append($0) }
        let before = try await server.receive()
        XCTAssertEqual(before.text, "before")
        return (listener, localPort, cut, first, server, serverEvents)
    }

    /// The first client exchanges a message, rekeys `rekeysFirst` times, exports its restart
    /// context and dies without a word; the second comes back with it. Returns the restart context's
    /// epoch.
    private func restart(rekeysFirst: Int) async throws -> UInt64 {
        let (listener, localPort, cut, first, server, serverEvents) = try await Self.firstAssociation()
        let port = listener.localAddress.port
        for round in 0..<rekeysFirst {
            try await first.updateKeys()
            let progress = try await DTLSChunkRekeyTests.waitFor(first) { $0.rekeys == round + 1 && $0.primaryReceiveEpochs.count == 1 }
            XCTAssertEqual(progress.sendEpoch, 4 + UInt64(round))
        }
        let saved = try await first.exportRestartContext()
        let savedContext = try DTLSChunkRestartContext(bytes: saved)
        XCTAssertEqual(savedContext.method, Self.keyManagement)
        XCTAssertEqual(savedContext.epoch, 3 + UInt64(rekeysFirst))
        cut.cut()
        await first.abort()

        XCTAssertEqual(savedContext.localPort, localPort)
        // No local endpoint: the restart comes from the port the context names.
        var (restarting, wire) = Self.client(to: port, from: localPort, restartContext: saved)
        restarting.local = nil
        let second = try await restarting.initiate(timeout: .seconds(10))
        try await second.send("after the restart")
        let after = try await server.receive()
        XCTAssertEqual(after.text, "after the restart", "the listener's connection goes on with the restarted peer")
        try await server.send("welcome back")
        let reply = try await second.receive()
        XCTAssertEqual(reply.text, "welcome back")
        XCTAssertTrue(serverEvents.names.contains { $0.hasPrefix("softError") && $0.contains("restarted") }, "\(serverEvents.names)")

        // On the wire: the INIT in clear, then only DTLS chunks, the COOKIE ECHO with the R flag.
        let written = wire.datagrams
        let common = SCTPPacket.commonHeaderLength
        XCTAssertEqual(written.first?[common], SCTPHandshakeChunks.initType)
        let cookieEcho = try XCTUnwrap(written.dropFirst().first)
        XCTAssertEqual(cookieEcho[common], DTLSChunkProtection.chunkType)
        XCTAssertEqual(cookieEcho[common + 1] & DTLSChunkProtection.restartFlag, DTLSChunkProtection.restartFlag, "the COOKIE ECHO goes under the restart context")
        XCTAssertTrue(wire.all(after: 1) { $0.count > common && $0[common] == DTLSChunkProtection.chunkType }, "nothing after the INIT in clear")
        XCTAssertFalse(wire.contains(Array("after the restart".utf8)))

        // A fresh handshake: epoch 3 keys both ways, and a new restart context in place of the old.
        for end in [second, server] {
            let keys = try await Self.waitFor(end) { $0 == Self.settled }
            XCTAssertEqual(keys, Self.settled)
        }
        let renewed = try DTLSChunkRestartContext(bytes: try await second.exportRestartContext())
        XCTAssertNotEqual(renewed.send, savedContext.send, "the new handshake's restart keys")
        for index in 0..<3 {
            try await second.send("still here \(index)")
            let message = try await server.receive()
            XCTAssertEqual(message.text, "still here \(index)")
        }
        let maybeDetails = await second.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertEqual(details.peerCertificateSubject, "/CN=localhost")
        await second.close()
        await server.abort()
        await listener.stop()
        return savedContext.epoch
    }

    /// A restart attempt from the dead client's port with a restart context whose keys are wrong,
    /// or with none (a plain SCTP restart), gets no further than its COOKIE ECHO: the listener
    /// drops it (AEAD failure, or a packet in clear) and its association is not restarted.
    func testARestartWithWrongKeysOrWithoutTheContextIsDropped() async throws {
        let (listener, localPort, cut, first, server, serverEvents) = try await Self.firstAssociation()
        let port = listener.localAddress.port
        var forged = try DTLSChunkRestartContext(bytes: try await first.exportRestartContext())
        XCTAssertEqual(forged.method, Self.keyManagement)
        forged.send.key = forged.send.key.map { $0 ^ 0x5A }
        cut.cut()
        await first.abort()

        let start = try await DTLSChunkSCTPTests.chunkState(of: server).counters
        for (attempt, context) in [("wrong keys", forged.bytes), ("no restart context", nil)] {
            do {
                let connection = try await Self.client(to: port, from: localPort, restartContext: context).0.initiate(timeout: .seconds(2))
                XCTFail("\(attempt): the restart went through")
                await connection.abort()
            } catch {}
        }
        let end = try await DTLSChunkSCTPTests.chunkState(of: server).counters
        XCTAssertGreaterThan(end.aeadFailures, start.aeadFailures, "the COOKIE ECHO under forged restart keys")
        XCTAssertGreaterThan(end.droppedUnprotected, start.droppedUnprotected, "the COOKIE ECHO in clear")
        XCTAssertFalse(serverEvents.names.contains { $0.contains("restarted") }, "\(serverEvents.names)")
        await server.abort()
        await listener.stop()
    }

    func testARestartContextIsReadBackAsWrittenAndAnythingElseIsRefused() throws {
        let material = { (seed: UInt8) in DTLSChunkKeyMaterial(key: Array(repeating: seed, count: 32), iv: Array(repeating: seed + 1, count: 12),
                                                                 sequenceNumberKey: Array(repeating: seed + 2, count: 32)) }
        let context = DTLSChunkRestartContext(method: .dtls13, role: .server, suite: .aes256GCMSHA384, epoch: 9, localPort: 40_000,
                                              send: material(1), receive: material(7), peerCertificateDER: [0x30, 0x03, 1, 2, 3])
        XCTAssertEqual(try DTLSChunkRestartContext(bytes: context.bytes), context)
        var shortKey = context
        shortKey.send.key.removeLast()
        let refused: [(String, [UInt8])] = [
            ("empty", []),
            ("a session in its place", HandshakeKeyManagement.exportedSessionPrefix + context.bytes),
            ("truncated", Array(context.bytes.dropLast())),
            ("with a byte more", context.bytes + [0]),
            ("a key of the wrong length", shortKey.bytes),
        ]
        for (what, bytes) in refused {
            XCTAssertThrowsError(try DTLSChunkRestartContext(bytes: bytes), what) { error in
                XCTAssertEqual((error as? TransportError)?.code, .invalidArgument, what)
            }
        }
        var security = DTLSChunkSCTPTests.security(.random())
        security.dtlsChunkRestartContext = context.bytes
        XCTAssertThrowsError(try DTLSChunkSettings(security: security), "a DTLS 1.3 restart context with pre-shared parameters only")
    }

    func testARestartedClientComesBackUnderItsRestartContextThenAFreshHandshakeRekeys() async throws {
        let epoch = try await restart(rekeysFirst: 0)
        XCTAssertEqual(epoch, 3, "the restart context shares epoch 3 with the one that replaces it")
    }

    /// The restart context opens the association again, but the handshake after it must show the
    /// identity the association had: a restarted client with another certificate of the same CA is
    /// refused by the listener, and the association ends at both ends.
    func testARestartedPeerWithAnotherIdentityIsRefusedByTheHandshakeAfterTheRestart() async throws {
        let (listener, localPort, cut, first, server, _) = try await Self.firstAssociation()
        let saved = try await first.exportRestartContext()
        cut.cut()
        await first.abort()

        let (restarting, _) = Self.client(to: listener.localAddress.port, from: localPort, restartContext: saved, identity: "renamed")
        let second = try await restarting.initiate(timeout: .seconds(10))
        let watchdog = abort(server, after: .seconds(10))  // an association that goes on fails the test, not hangs it
        let serverError = await XCTAssertThrowsTransportError(.certificateRejected) { _ = try await server.receive() }
        watchdog.cancel()
        XCTAssertTrue(serverError?.message.contains("another identity") == true, String(describing: serverError))
        do {
            let message = try await second.receive()
            XCTFail("the restarted client's end must end too, not deliver \(message)")
        } catch {}
        await listener.stop()
    }

    func testARestartAfterRekeysStartsTheEpochsAgainAtThree() async throws {
        let epoch = try await restart(rekeysFirst: 2)
        XCTAssertEqual(epoch, 5)
    }
}

/// The same with TLS 1.3 key management (draft-porfiri "SCTP Association Restart").
/// (Test discovery on Linux finds only the methods a class declares itself.)
final class DTLSChunkTLS13RestartTests: DTLSChunkRestartTests {
    override class var keyManagement: DTLSKeyManagementMethod { .tls13 }
    override func testARestartWithWrongKeysOrWithoutTheContextIsDropped() async throws {
        try await super.testARestartWithWrongKeysOrWithoutTheContextIsDropped()
    }
    override func testARestartedClientComesBackUnderItsRestartContextThenAFreshHandshakeRekeys() async throws {
        try await super.testARestartedClientComesBackUnderItsRestartContextThenAFreshHandshakeRekeys()
    }
    override func testARestartedPeerWithAnotherIdentityIsRefusedByTheHandshakeAfterTheRestart() async throws {
        try await super.testARestartedPeerWithAnotherIdentityIsRefusedByTheHandshakeAfterTheRestart()
    }
    override func testARestartAfterRekeysStartsTheEpochsAgainAtThree() async throws {
        try await super.testARestartAfterRekeysStartsTheEpochsAgainAtThree()
    }
}

/// A path that can be cut: from then on nothing passes either way, as when a process dies.
final class PathCut: Sendable {
    private let state = Atomic<Bool>(false)
    var isCut: Bool { state.load(ordering: .relaxed) }
    func cut() { state.store(true, ordering: .relaxed) }
}
