import Foundation
import XCTest
@testable import Taps

/// dtls-chunk-sctp keyed by TLS 1.3 handshakes (draft-porfiri-tsvwg-sctp-dtls-handshake, KMId 192)
/// over loopback: the system OpenSSL's TLS 1.3, records in PPID 4242 messages behind the T bit and
/// epoch byte, one record per message, the twelve exports under one label, Protection Established.
final class DTLSChunkTLS13Tests: XCTestCase {
    static let ends = HandshakeEnds(method: .tls13)

    /// The DATA chunks on PPID 4242 a datagram carries in clear that begin a user message: their payloads.
    static func clearKeyManagementMessages(in datagram: [UInt8]) -> [[UInt8]] {
        var messages: [[UInt8]] = []
        var offset = SCTPPacket.commonHeaderLength
        while offset + 16 <= datagram.count {
            let length = Int(datagram[offset + 2]) << 8 | Int(datagram[offset + 3])
            guard length >= 4, offset + length <= datagram.count else { break }
            let ppid = datagram[(offset + 12)..<(offset + 16)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let beginsMessage = datagram[offset + 1] & 0x02 != 0  // the B bit (RFC 9260 section 3.3.1)
            if datagram[offset] == 0, beginsMessage, length > 16, ppid == DTLSChunkPathFilter.keyManagementPPID {
                messages.append(Array(datagram[(offset + 16)..<(offset + length)]))
            }
            offset += (length + 3) & ~3
        }
        return messages
    }

    func testAMutuallyAuthenticatedTLSHandshakeKeysTheChunkAndNothingGoesInClear() async throws {
        let listener = try await Self.ends.listener()
        let echo = startEcho(listener)
        let (client, wire) = DTLSChunkDTLS13Tests.clientLoggingWrites(listener.localAddress.port, Self.ends.security(server: false))
        let first = try await client.initiate(timeout: .seconds(10))
        let handshakeDatagrams = wire.count
        let maybeStatus = await first.dtlsChunkStatus
        let status = try XCTUnwrap(maybeStatus)
        XCTAssertEqual(status.agreement?.method, .tls13)
        XCTAssertEqual(status.agreement?.role, .client)
        XCTAssertTrue(status.requiresProtection)
        let maybeDetails = await first.securityDetails
        let details = try XCTUnwrap(maybeDetails)
        XCTAssertTrue(details.protocolVersion.contains("TLS 1.3 (KMId 192)"), details.protocolVersion)
        XCTAssertEqual(details.peerCertificateSubject, "/CN=localhost")

        // The ClientHello went in clear (the initial handshake): T = 0, epoch 3, then a TLS
        // handshake record holding a ClientHello (draft-porfiri "TLS Message Transport").
        let clear = wire.datagrams.flatMap(Self.clearKeyManagementMessages)
        let clientHello = try XCTUnwrap(clear.first)
        XCTAssertEqual(clientHello[0], 0x03, "T bit clear, epoch 3")
        XCTAssertEqual(clientHello[1], 22, "a handshake record")
        XCTAssertEqual(clientHello[6], 1, "a ClientHello")
        // The client's second flight follows in clear too (the compatibility ChangeCipherSpec, then
        // TLS 1.3's encrypted handshake records), one whole record per message; nothing else does.
        XCTAssertTrue(clear.allSatisfy { $0[0] == 0x03 && [20, 22, 23].contains($0[1]) })
        XCTAssertTrue(clear.allSatisfy { $0.count == 1 + 5 + (Int($0[4]) << 8 | Int($0[5])) }, "one record per message")
        XCTAssertGreaterThanOrEqual(clear.count, 3, "the ClientHello, the ChangeCipherSpec and the client's encrypted flight")

        let second = try await first.clone()
        for (index, connection) in [first, second].enumerated() {
            let payload = Array("secret-\(index)-".utf8) + [UInt8](repeating: UInt8(index), count: 20_000)
            try await connection.send(payload)
            let reply = try await connection.receive()
            XCTAssertEqual(reply.content, payload)
        }
        XCTAssertFalse(wire.contains(Array("secret-".utf8)), "no application byte in clear, from the INIT on")
        XCTAssertTrue(wire.all(after: handshakeDatagrams) { $0.count > 12 && $0[12] == DTLSChunkProtection.chunkType })
        await first.close()
        await second.close()
        await listener.stop()
        echo.cancel()
    }

    /// Offered by default after DTLS 1.3: two default ends agree on DTLS 1.3; a client that offers
    /// TLS 1.3 alone gets it from a default listener.
    func testBothMethodsAreOfferedDTLS13First() async throws {
        let listener = try await DTLSChunkDTLS13Tests.listener()
        let echo = startEcho(listener)
        for (offered, agreed) in [(nil, DTLSKeyManagementMethod.dtls13), ([.tls13], .tls13)] as [([DTLSKeyManagementMethod]?, DTLSKeyManagementMethod)] {
            var security = DTLSChunkDTLS13Tests.security(server: false)
            security.dtlsChunkKeyManagement = offered
            XCTAssertEqual(DTLSChunkSettings.offeredMethods(security), offered ?? [.dtls13, .tls13])
            let connection = try await DTLSChunkDTLS13Tests.client(listener.localAddress.port, security).initiate(timeout: .seconds(10))
            let status = await connection.dtlsChunkStatus
            XCTAssertEqual(status?.agreement?.method, agreed)
            try await connection.send("agreed \(agreed)")
            let reply = try await connection.receive()
            XCTAssertEqual(reply.text, "agreed \(agreed)")
            await connection.close()
        }
        await listener.stop()
        echo.cancel()
    }

    /// SSKE from the TLS connection in use: equal at both ends, other bytes after a rekey, and the
    /// method's own exporter label refused.
    func testKeyingMaterialComesFromTheTLSConnectionInUse() async throws {
        var server = Self.ends.security(server: true), clientSecurity = Self.ends.security(server: false)
        server.dtlsChunkRekey = .onDemand
        clientSecurity.dtlsChunkRekey = .onDemand
        let listener = try await Self.ends.listener(server)
        let client = try await Self.ends.client(listener.localAddress.port, clientSecurity).initiate(timeout: .seconds(10))
        try await client.send("hello")
        let accepted = try await listener.firstConnection()
        _ = try await accepted.receive()
        let clientBytes = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [7], length: 32)
        let serverBytes = try await accepted.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [7], length: 32)
        XCTAssertEqual(clientBytes, serverBytes)
        let refused = await XCTAssertThrowsTransportError(.invalidArgument) {
            try await client.exportKeyingMaterial(label: TLSChunkKeyExport.label, context: nil, length: 16)
        }
        XCTAssertTrue(refused?.message.contains("DTLS chunk's own keys") == true, String(describing: refused))

        try await client.updateKeys()
        _ = try await DTLSChunkRekeyTests.waitFor(client) { $0.sendEpoch == 4 && $0.primaryReceiveEpochs == [4] }
        _ = try await DTLSChunkRekeyTests.waitFor(accepted) { $0.sendEpoch == 4 && $0.primaryReceiveEpochs == [4] }
        let clientAfter = try await client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [7], length: 32)
        let serverAfter = try await accepted.exportKeyingMaterial(label: "EXPORTER-taps-test", context: [7], length: 32)
        XCTAssertEqual(clientAfter, serverAfter)
        XCTAssertNotEqual(clientAfter, clientBytes)
        await client.close()
        await listener.stop()
    }

    func testACertificateFromAnotherCAFailsTheHandshakeAndNoConnectionIsDelivered() async throws {
        let listener = try await Self.ends.listener()
        let client = Self.ends.client(listener.localAddress.port, Self.ends.security(server: false, trusting: TestPKI.shared.otherCA))
        let error = await XCTAssertThrowsTransportError(.certificateRejected) { try await client.initiate(timeout: .seconds(10)) }
        XCTAssertTrue(error?.message.contains("TLS 1.3 key management") == true, String(describing: error))
        let failed = try await listener.failedEstablishments(within: .seconds(10))
        XCTAssertEqual(failed, 1, "the listener's end failed too")
        await listener.stop()
    }

    /// The twelve exports (draft-porfiri "Exporter Context"): one label; the context is direction,
    /// key role and key type, then the SCTP initiator's parameter and the responder's as on the wire.
    func testTheExporterContextNamesDirectionRoleTypeAndBothParameters() throws {
        let initiator: [UInt8] = [0x80, 0x06, 0, 10, 1, 2, 3, 4, 0x01, 0xC0]
        let responder: [UInt8] = [0x80, 0x06, 0, 10, 5, 6, 7, 8, 0x02, 0xC0]
        var asked: [(label: String, context: [UInt8], length: Int)] = []
        let keys = try TLSChunkKeyExport.derive(suite: .aes256GCMSHA384, initiatorParameter: initiator, responderParameter: responder) { label, context, length in
            asked.append((label, context, length))
            return (0..<length).map { _ in UInt8(asked.count) }
        }
        XCTAssertEqual(Set(asked.map(\.label)), [TLSChunkKeyExport.label])
        XCTAssertEqual(asked.count, 12)
        XCTAssertEqual(Set(asked.map { Array($0.context.prefix(3)) }).count, 12, "every direction, role and type once")
        XCTAssertTrue(asked.allSatisfy { Array($0.context.dropFirst(3)) == initiator + responder })
        func export(_ direction: UInt8, _ role: UInt8, _ type: UInt8) -> (bytes: [UInt8], length: Int)? {
            guard let index = asked.firstIndex(where: { Array($0.context.prefix(3)) == [direction, role, type] }) else { return nil }
            return ((0..<asked[index].length).map { _ in UInt8(index + 1) }, asked[index].length)
        }
        XCTAssertEqual(keys.clientWrite.key, export(0, 0, 0)?.bytes)
        XCTAssertEqual(keys.clientWrite.sequenceNumberKey, export(0, 0, 1)?.bytes)
        XCTAssertEqual(keys.clientWrite.iv, export(0, 0, 2)?.bytes)
        XCTAssertEqual(export(0, 0, 2)?.length, 12)
        XCTAssertEqual(export(1, 0, 0)?.length, 32, "AES-256 keys")
        XCTAssertEqual(keys.serverWrite.key, export(1, 0, 0)?.bytes)
        XCTAssertEqual(keys.restartClientWrite.key, export(0, 1, 0)?.bytes)
        XCTAssertEqual(keys.restartServerWrite.iv, export(1, 1, 2)?.bytes)
    }

    /// taps-echo both ways with each handshake method: both ends print the method, the version,
    /// the cipher, the epoch and the counters.
    func testEchoExamplePrintsTheKeyManagementAtBothEnds() async throws {
        let pki = TestPKI.shared
        for (km, method) in [("tls13", "TLS 1.3 (KMId 192)"), ("dtls13", "DTLS 1.3 (KMId 193)")] {
            let port = try await freePort(udp: true)
            let server = try ChildProcess(ChildProcess.product("taps-echo"),
                                          ["listen", "--stack", "dtls-chunk-sctp", "--port", "\(port)", "--km", km, "--count", "1",
                                           "--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.caPEM])
            defer { server.terminate() }
            let listening = await server.waitFor("listening on")
            XCTAssertTrue(listening, server.text)
            let client = try ChildProcess(ChildProcess.product("taps-echo"),
                                          ["connect", "127.0.0.1", "\(port)", "--stack", "dtls-chunk-sctp", "--km", km, "--ca", pki.caPEM,
                                           "--client-cert", pki.path("rsa.pem"), "--client-key", pki.path("rsa.key"), "--message", "over \(km)"])
            let status = await client.finish()
            XCTAssertEqual(status, 0, client.text + server.text)
            let serverPrinted = await server.waitFor("counters:")
            XCTAssertTrue(serverPrinted, server.text)
            for (end, text, role) in [("client", client.text, "client"), ("server", server.text, "server")] {
                XCTAssertTrue(text.contains("km: \(method), \(role) role"), "\(end): \(text)")
                XCTAssertTrue(text.contains("tls-version: DTLSv1.3 (SCTP DTLS chunk, \(method))"), "\(end): \(text)")
                XCTAssertTrue(text.contains("cipher: TLS_"), "\(end): \(text)")
                XCTAssertTrue(text.contains("epoch: 3"), "\(end): \(text)")
            }
            XCTAssertTrue(client.text.contains("over \(km)"), client.text)
        }
    }

    /// A liberal receiver (draft-porfiri "TLS Message Transport"): two TLS 1.3 key management
    /// connections in memory, the client's records all joined into one message for the server, the
    /// server's each split over two messages for the client; both finish with the same exporter.
    func testATLSConnectionTakesSeveralRecordsInOneMessageOrOneSplitOverTwo() throws {
        let clientContexts = try XCTUnwrap(try KeyManagementContexts(tls13: Self.ends.security(server: false)))
        let serverContexts = try XCTUnwrap(try KeyManagementContexts(tls13: Self.ends.security(server: true)))
        guard case .tls13(let clientContext, _) = clientContexts.engines, case .tls13(_, let serverContext) = serverContexts.engines else {
            return XCTFail("not the TLS 1.3 method's contexts")
        }
        var toServer: [[UInt8]] = [], toClient: [[UInt8]] = []
        let client = try TLS13KeyManagementConnection(index: 3, role: .client, context: clientContext, sessionKey: nil, resumes: false,
                                                      isRekey: false) { toServer.append($0) }
        let server = try TLS13KeyManagementConnection(index: 3, role: .server, context: serverContext, sessionKey: nil, resumes: false,
                                                      isRekey: false) { toClient.append($0) }
        client.start()
        server.start()
        for _ in 0..<8 where !toServer.isEmpty || !toClient.isEmpty {
            let joined = toServer.flatMap { $0.dropFirst() }
            toServer.removeAll()
            if !joined.isEmpty { server.receive(joined) }
            let messages = toClient
            toClient.removeAll()
            for message in messages {
                let records = Array(message.dropFirst())
                client.receive(Array(records.prefix(records.count / 2)))
                client.receive(Array(records.dropFirst(records.count / 2)))
            }
        }
        XCTAssertEqual(client.state, .established)
        XCTAssertEqual(server.state, .established)
        let clientBytes = client.exportKeyingMaterial(label: "EXPORTER-taps-test", context: nil, length: 32)
        XCTAssertNotNil(clientBytes)
        XCTAssertEqual(clientBytes, server.exportKeyingMaterial(label: "EXPORTER-taps-test", context: nil, length: 32))
        XCTAssertEqual(client.peerCertificateDER.flatMap(CertificateIdentity.init(certificateDER:))?.subjectLine, "/CN=localhost")
    }

    /// The message framing: T bit and epoch, records or a control message, Protection Established.
    func testKeyManagementMessagesCarryTheTBitAndTheEpoch() {
        let records = TLSKeyManagementMessage(epoch: 131, content: .records([22, 3, 3, 0, 1, 1]))
        XCTAssertEqual(records.bytes, [131 & 0x7F, 22, 3, 3, 0, 1, 1])
        XCTAssertEqual(TLSKeyManagementMessage(bytes: records.bytes), records)
        XCTAssertEqual(HandshakeMethod.tls13.protectionValid(for: 4), [0x84, 0x01])
        XCTAssertEqual(HandshakeMethod.tls13.parse([0x84, 0x01]), .protectionValid)
        XCTAssertNil(HandshakeMethod.tls13.parse([0x84, 0x02]), "an unknown control message")
        XCTAssertNil(HandshakeMethod.tls13.parse([0x03]), "no records")
        XCTAssertEqual(HandshakeMethod.tls13.parse([0x05, 22, 3, 1, 0, 4, 1, 0, 0, 0]),
                       .records(indexBits: 5, records: [22, 3, 1, 0, 4, 1, 0, 0, 0], clientHello: true))
        XCTAssertEqual(HandshakeMethod.dtls13.parse(DTLSKeyManagementMessage.protectionValid), .protectionValid)
    }
}
