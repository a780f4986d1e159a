import XCTest
@testable import Taps

/// The DTLS Key Management Parameter (0x8006) and the establishment procedure, without sockets.
final class DTLSChunkNegotiationTests: XCTestCase {
    typealias Parameter = DTLSKeyManagementParameter

    func testTheParameterHasTheDraftsWireFormat() throws {
        let parameter = Parameter(tieBreaker: 0x0102_0304, flags: [.client, .server, .restart],
                                  methods: [.tls13, .preSharedParameters])
        // Type 0x8006, length 9 + N, tie breaker, reserved|R|S|C, KMIds; padding not counted.
        XCTAssertEqual(parameter.wireBytes, [0x80, 0x06, 0x00, 0x0B, 1, 2, 3, 4, 0x07, 192, 0])
        XCTAssertEqual(parameter.paddedBytes, [0x80, 0x06, 0x00, 0x0B, 1, 2, 3, 4, 0x07, 192, 0, 0])
        XCTAssertEqual(Parameter(tieBreaker: 9, flags: [.client], methods: [.preSharedParameters]).wireBytes.count, 10)
        let parsed = try XCTUnwrap(Parameter.parse(parameter.paddedBytes))
        XCTAssertEqual(parsed.tieBreaker, 0x0102_0304)
        XCTAssertEqual(parsed.flags, [.client, .server, .restart])
        XCTAssertEqual(parsed.methods, [.tls13, .preSharedParameters])
    }

    func testAReceivedParameterKeepsItsBytesReservedBitsIncluded() throws {
        let received: [UInt8] = [0x80, 0x06, 0x00, 0x0A, 0, 0, 0, 1, 0xF9, 0]
        let parsed = try XCTUnwrap(Parameter.parse(received))
        XCTAssertEqual(parsed.flags, [.client], "reserved bits are ignored")
        XCTAssertEqual(parsed.wireBytes, received, "but key derivation binds the bytes as received")
        var changed = parsed
        changed.tieBreaker = 2
        XCTAssertEqual(changed.wireBytes, [0x80, 0x06, 0x00, 0x0A, 0, 0, 0, 2, 0x01, 0], "a changed field is encoded afresh")
    }

    func testMalformedParametersAreRefused() {
        XCTAssertNil(Parameter.parse([0x80, 0x06, 0x00, 0x09, 0, 0, 0, 1, 1]), "no KMId")
        XCTAssertNil(Parameter.parse([0x80, 0x06, 0x00, 0x0C, 0, 0, 0, 1, 1, 0]), "longer than the bytes")
        XCTAssertNil(Parameter.parse([0x80, 0x07, 0x00, 0x0A, 0, 0, 0, 1, 1, 0]), "another type")
    }

    private func agree(_ local: Parameter, _ peer: Parameter?) -> Result<DTLSChunkAgreement, DTLSChunkNegotiationFailure> {
        DTLSChunkNegotiation.agree(local: local, peer: peer)
    }

    func testRolesFollowTheEstablishmentProcedure() throws {
        let both: Parameter.Roles = [.client, .server]
        func role(_ ours: Parameter.Roles, _ tie: UInt32, _ theirs: Parameter.Roles, _ peerTie: UInt32) -> DTLSChunkAgreement.Role? {
            try? agree(Parameter(tieBreaker: tie, flags: ours, methods: [.preSharedParameters]),
                       Parameter(tieBreaker: peerTie, flags: theirs, methods: [.preSharedParameters])).get().role
        }
        // A single role is taken when the peer can take the other.
        XCTAssertEqual(role([.client], 9, both, 1), .client)
        XCTAssertEqual(role([.server], 1, both, 9), .server)
        XCTAssertEqual(role(both, 1, [.client], 9), .server)
        XCTAssertEqual(role(both, 9, [.server], 1), .client)
        XCTAssertEqual(role([.client], 1, [.server], 9), .client)
        // Both offer both: the larger tie breaker is the server.
        XCTAssertEqual(role(both, 10, both, 9), .server)
        XCTAssertEqual(role(both, 9, both, 10), .client)
        XCTAssertEqual(agree(Parameter(tieBreaker: 5, flags: both, methods: [.preSharedParameters]),
                             Parameter(tieBreaker: 5, flags: both, methods: [.preSharedParameters])), .failure(.tieBreakerCollision))
        XCTAssertEqual(agree(Parameter(tieBreaker: 5, flags: [.client], methods: [.preSharedParameters]),
                             Parameter(tieBreaker: 6, flags: [.client], methods: [.preSharedParameters])), .failure(.incompatibleRoles))
        XCTAssertEqual(agree(Parameter(tieBreaker: 5, flags: [], methods: [.preSharedParameters]),
                             Parameter(tieBreaker: 6, flags: both, methods: [.preSharedParameters])), .failure(.incompatibleRoles))
        XCTAssertEqual(agree(Parameter(tieBreaker: 5, flags: both, methods: [.preSharedParameters]), nil), .failure(.missingSupport))
    }

    func testTheServersListChoosesTheMethodAndBothParametersAreKept() throws {
        let client = Parameter(tieBreaker: 1, flags: [.client, .restart], methods: [.preSharedParameters, .tls13])
        let server = Parameter(tieBreaker: 2, flags: [.server, .restart], methods: [.tls13, .preSharedParameters])
        let atClient = try agree(client, server).get()
        let atServer = try agree(server, client).get()
        XCTAssertEqual(atClient.method, .tls13, "the server's first choice the client supports")
        XCTAssertEqual(atServer.method, .tls13)
        XCTAssertEqual(atClient.role, .client)
        XCTAssertEqual(atServer.role, .server)
        XCTAssertTrue(atClient.restartSupported)
        // The downgrade-prevention data is the client's parameter, then the server's, on both ends.
        XCTAssertEqual(atClient.downgradePreventionData, client.wireBytes + server.wireBytes)
        XCTAssertEqual(atServer.downgradePreventionData, atClient.downgradePreventionData)
        XCTAssertEqual(agree(Parameter(tieBreaker: 1, flags: [.client], methods: [DTLSKeyManagementMethod(rawValue: 7)]), server),
                       .failure(.noCommonMethod))
        XCTAssertEqual(DTLSChunkNegotiationFailure.noCommonMethod.causeCode, 101)
    }

    // MARK: The chunks on the path

    /// An INIT as usrsctp builds it: common header (tag 0), the INIT chunk with one 6-byte parameter
    /// (length not a multiple of 4, so the chunk ends in padding).
    static let initPacket: [UInt8] = [0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0, 0, 0, 0, 0,
                                      1, 0, 0, 26, 0xAA, 0xBB, 0xCC, 0xDD, 0, 1, 0, 0, 0, 32, 0, 32, 0, 0, 0, 7,
                                      0xC0, 0x00, 0x00, 0x06, 0x12, 0x34, 0, 0]

    func testOurParameterIsAddedAfterThePaddedChunkAndFoundAgain() throws {
        let parameter = Parameter(tieBreaker: 42, flags: [.client], methods: [.preSharedParameters])
        var output = [UInt8](repeating: 0xFF, count: 128)
        let length = try XCTUnwrap(Self.initPacket.withUnsafeBytes { packet in
            output.withUnsafeMutableBytes { SCTPHandshakeChunks.appending(parameter, to: packet, into: $0) }
        })
        let packet = Array(output.prefix(length))
        XCTAssertEqual(packet.count % 4, 0)
        XCTAssertEqual(packet.count, Self.initPacket.count + 12)
        XCTAssertEqual(Array(packet[12..<40]), Array(Self.initPacket[12..<40]).enumerated().map { $0.offset == 3 ? packet[15] : $0.element })
        XCTAssertEqual(Int(packet[14]) << 8 | Int(packet[15]), 28 + 10, "chunk length: padded chunk plus the parameter without its padding")
        XCTAssertEqual(Array(packet[40..<50]), parameter.wireBytes)
        let found = packet.withUnsafeBytes { SCTPHandshakeChunks.keyManagementParameter($0, chunkAt: 12) }
        XCTAssertEqual(found?.wireBytes, parameter.wireBytes)
        XCTAssertNil(Self.initPacket.withUnsafeBytes { SCTPHandshakeChunks.keyManagementParameter($0, chunkAt: 12) })
    }

    func testAnAbortAnswersWithThePeersTagAndOneCause() throws {
        let abort = try XCTUnwrap(Self.initPacket.withUnsafeBytes { SCTPHandshakeChunks.abort(answering: $0, causeCode: 100) })
        XCTAssertEqual(Array(abort[0..<4]), [0x13, 0x89, 0x13, 0x88], "ports swapped")
        XCTAssertEqual(Array(abort[4..<8]), [0xAA, 0xBB, 0xCC, 0xDD], "the INIT's initiate tag")
        XCTAssertEqual(Array(abort[12...]), [6, 0, 0, 8, 0, 100, 0, 4])
        XCTAssertEqual(abort.withUnsafeBytes { SCTPHandshakeChunks.abortCauses($0) }, [100])
    }

    func testTheCookieGivesBackTheClientsParameterAndBothTags() throws {
        let parameter = Parameter(tieBreaker: 7, flags: [.client], methods: [.preSharedParameters])
        var initChunk: [UInt8] = [1, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0, 1, 0, 0, 0, 32, 0, 32, 0, 0, 0, 1] + parameter.paddedBytes
        initChunk[3] = UInt8(20 + parameter.wireBytes.count)
        let initAck: [UInt8] = [2, 0, 0, 20, 0x55, 0x66, 0x77, 0x88, 0, 1, 0, 0, 0, 32, 0, 32, 0, 0, 0, 9]
        var cookie = [UInt8](repeating: 0x4B, count: SCTPHandshakeChunks.usrsctpCookieHeaderLength) + initChunk + initAck
        cookie += [UInt8](repeating: 0x5A, count: SCTPHandshakeChunks.cookieSignatureLength)
        var packet: [UInt8] = [0x13, 0x88, 0x13, 0x89, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 10, 0, 0, 0] + cookie
        let chunkLength = 4 + cookie.count
        packet[14] = UInt8(chunkLength >> 8)
        packet[15] = UInt8(chunkLength & 0xFF)
        let contents = try XCTUnwrap(packet.withUnsafeBytes { SCTPHandshakeChunks.cookieContents($0) })
        XCTAssertEqual(contents.clientTag, 0x1122_3344)
        XCTAssertEqual(contents.serverTag, 0x5566_7788)
        XCTAssertEqual(contents.clientParameter?.wireBytes, parameter.wireBytes)
        // The listener's tie breaker is reproducible from the tags alone.
        let key = DTLSChunkPathFilter.randomTieBreakerKey()
        XCTAssertEqual(DTLSChunkPathFilter.tieBreaker(key: key, clientTag: 1, serverTag: 2),
                       DTLSChunkPathFilter.tieBreaker(key: key, clientTag: 1, serverTag: 2))
        XCTAssertNotEqual(DTLSChunkPathFilter.tieBreaker(key: key, clientTag: 1, serverTag: 2),
                          DTLSChunkPathFilter.tieBreaker(key: key, clientTag: 2, serverTag: 1))
        // Cut inside the copied INIT: not a cookie we can read.
        XCTAssertNil(Array(packet.prefix(16 + 112 + 10)).withUnsafeBytes { SCTPHandshakeChunks.cookieContents($0) })
    }
}
