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

    struct ChunkState: Sendable {
        let counters: DTLSChunkCounters
        let agreement: DTLSChunkAgreement?
    }

    /// What the DTLS chunk filter of a connection's association has counted and agreed.
    static func chunkState(of connection: Connection) async throws -> ChunkState {
        let state = try await connection.loop.submit {
            connection.assumeIsolated { connection -> ChunkState? in
                guard let filter = connection.layer.layerChain.lazy
                    .compactMap({ ($0 as? SCTPStreamLayer)?.association.path.chunkFilter }).first else { return nil }
                return ChunkState(counters: filter.protection.counters, agreement: filter.agreement)
            }
        }
        return try XCTUnwrap(state, "no DTLS chunk filter under the connection")
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
        var failed = 0
        for _ in 0..<100 where failed == 0 {
            failed = await listener.failedEstablishments
            if failed == 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        XCTAssertEqual(failed, 1)
        let serverError = await listener.lastEstablishmentError
        XCTAssertEqual(serverError?.code, .handshakeFailed, "\(String(describing: serverError))")
        await listener.stop()
        let count = await delivered.value
        XCTAssertEqual(count, 0)
    }

    func testKeysOfTheWrongLengthAreRefusedBeforeAnyPacket() async throws {
        var keys = DTLSChunkPreSharedKeys.random()
        keys.clientToServer.key.removeLast()
        let client = Self.client(9, keys: keys)
        await XCTAssertThrowsTransportError(.invalidArgument) { try await client.initiate(timeout: .seconds(2)) }
        var reused = DTLSChunkPreSharedKeys.random()
        reused.serverToClient.key = reused.clientToServer.key
        await XCTAssertThrowsTransportError(.invalidArgument) { try await Self.listener(keys: reused) }
    }

    func testSelectionNeedsKeysAndExplainsWhy() throws {
        var security = SecurityParameters()
        let without = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security).candidateStacks()
        let report = try XCTUnwrap(without.first { $0.stack.name == "dtls-chunk-sctp" })
        XCTAssertFalse(report.qualifies)
        XCTAssertTrue(report.reasons.contains { $0.contains("dtlsChunkKeys") }, "\(report.reasons)")
        security.dtlsChunkKeys = .random()
        let with = Preconnection(remote: .loopback(port: 9), transport: Self.transport(), security: security).candidateStacks()
        XCTAssertEqual(with.first { $0.rank == 0 }?.stack.name, "dtls-chunk-sctp", with.table)
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

    func testAStrictClientRefusesAPlainSCTPListener() async throws {
        let listener = try await Self.listener(keys: nil, stacks: [.sctp])
        let client = Self.client(listener.localAddress.port, keys: .random())
        let error = await XCTAssertThrowsTransportError(.handshakeFailed) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("cause 100") == true, "\(String(describing: error))")
        await listener.stop()
    }
}
