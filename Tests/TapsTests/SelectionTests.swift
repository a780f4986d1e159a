import XCTest
@testable import Taps

final class SelectionTests: XCTestCase {
    func testSecureStreamSelectsTLSAndExplainsTheRest() {
        let preconnection = Preconnection(remote: .host("example.net", port: 443))
        let reports = preconnection.candidateStacks()
        let tls = reports.first { $0.stack.name == "tls-tcp" }!
        XCTAssertTrue(tls.qualifies)
        XCTAssertEqual(tls.rank, 0)
        let tcp = reports.first { $0.stack.name == "tcp" }!
        XCTAssertFalse(tcp.qualifies)
        XCTAssertTrue(tcp.reasons.contains { $0.contains("security required") }, "\(tcp.reasons)")
        let udp = reports.first { $0.stack.name == "udp" }!
        XCTAssertTrue(udp.reasons.contains("reliability required, not provided"), "\(udp.reasons)")
        XCTAssertTrue(reports.table.contains("tls-tcp"))
    }

    func testFramerGivesByteStreamsMessageBoundaries() {
        var preconnection = Preconnection(remote: .loopback(port: 1), transport: .reliableMessage, security: .disabled)
        XCTAssertFalse(preconnection.candidateStacks().first { $0.stack.name == "tcp" }!.qualifies)
        preconnection.framer = LengthPrefixFramer()
        XCTAssertTrue(preconnection.candidateStacks().first { $0.stack.name == "tcp" }!.qualifies)
    }

    func testUnmetRequirementFailsBeforeAnyPacketAndNamesIt() async {
        var properties = TransportProperties.reliableInOrderStream
        properties.multistreaming = .require
        properties.perMsgReliability = .require
        // TLS with multistreaming is tls-sctp, whose TLS records may not have limited lifetimes. Port
        // 1 on loopback: a packet would give connectionRefused instead.
        let preconnection = Preconnection(remote: .loopback(port: 1), transport: properties, security: .clientDefault)
        let error = await XCTAssertThrowsTransportError(.noCandidate) { try await preconnection.initiate() }
        XCTAssertTrue(error?.message.contains("tls-sctp: perMsgReliability required, not provided (RFC 3436 section 4.3.2") ?? false,
                      "\(String(describing: error))")
    }

    func testMultistreamingWithSecuritySelectsTLSOverSCTP() {
        var properties = TransportProperties.reliableInOrderStream
        properties.multistreaming = .require
        let reports = Preconnection(remote: .loopback(port: 1), transport: properties).candidateStacks()
        XCTAssertEqual(reports.filter(\.qualifies).map(\.stack.name), ["tls-sctp"], reports.table)
        // Message boundaries need a framer: TLS is a byte stream on each stream.
        properties.preserveMsgBoundaries = .require
        let withoutFramer = Preconnection(remote: .loopback(port: 1), transport: properties).candidateStacks()
        let tlsSCTP = withoutFramer.first { $0.stack.name == "tls-sctp" }
        XCTAssertEqual(tlsSCTP?.qualifies, false)
        XCTAssertTrue(tlsSCTP?.reasons.contains { $0.contains("a framer adds message boundaries") } ?? false, withoutFramer.table)
        let withFramer = Preconnection(remote: .loopback(port: 1), transport: properties, framer: LengthPrefixFramer()).candidateStacks()
        XCTAssertEqual(withFramer.filter(\.qualifies).map(\.stack.name), ["tls-sctp"], withFramer.table)
    }

    func testPreferAndAvoidRank() {
        var properties = TransportProperties()
        properties.reliability = .prefer
        properties.preserveOrder = .noPreference
        properties.congestionControl = .noPreference
        var preconnection = Preconnection(remote: .loopback(port: 1), transport: properties, security: .disabled)
        var ranked = preconnection.candidateStacks().filter(\.qualifies).sorted { $0.rank! < $1.rank! }.map(\.stack.name)
        XCTAssertEqual(ranked, ["tcp", "sctp", "udp"])
        preconnection.transport.reliability = .avoid
        ranked = preconnection.candidateStacks().filter(\.qualifies).sorted { $0.rank! < $1.rank! }.map(\.stack.name)
        XCTAssertEqual(ranked, ["udp", "tcp", "sctp"])
        preconnection.transport.reliability = .prohibit
        ranked = preconnection.candidateStacks().filter(\.qualifies).map(\.stack.name)
        XCTAssertEqual(ranked, ["udp"])
    }

    func testSecurityInterfaceRequirementsFilterStacks() {
        var security = SecurityParameters.clientDefault
        security.require(.connectionTermination)
        var preconnection = Preconnection(remote: .loopback(port: 1), security: security)
        XCTAssertTrue(preconnection.candidateStacks().first { $0.stack.name == "tls-tcp" }!.qualifies)
        preconnection.security.require(.mobilityEvents)
        let tls = preconnection.candidateStacks().first { $0.stack.name == "tls-tcp" }!
        XCTAssertFalse(tls.qualifies)
        XCTAssertTrue(tls.reasons.contains { $0.contains("ME required") }, "\(tls.reasons)")
        // KU rules DTLS 1.2 out and keeps TLS.
        var keyUpdate = SecurityParameters.clientDefault
        keyUpdate.require(.keyUpdate)
        let ku = Preconnection(remote: .loopback(port: 1), transport: .unreliableDatagram, security: keyUpdate).candidateStacks()
        let dtls = ku.first { $0.stack.name == "dtls-udp" }!
        XCTAssertFalse(dtls.qualifies)
        XCTAssertTrue(dtls.reasons.contains { $0.contains("KU required, DTLS here does not expose it") }, "\(dtls.reasons)")
        preconnection.security = .clientDefault
        preconnection.security.prohibit(.connectionTermination)
        XCTAssertFalse(preconnection.candidateStacks().first { $0.stack.name == "tls-tcp" }!.qualifies)
    }

    func testAllowedVersionsFilterSecurityProtocols() {
        var security = SecurityParameters.clientDefault
        security.allowedVersions = [.dtls12]
        let preconnection = Preconnection(remote: .loopback(port: 1), security: security)
        let tls = preconnection.candidateStacks().first { $0.stack.name == "tls-tcp" }!
        XCTAssertFalse(tls.qualifies)
        XCTAssertTrue(tls.reasons.contains { $0.contains("not allowed") }, "\(tls.reasons)")
    }

    func testRolesAreHonoured() {
        let preconnection = Preconnection(local: .loopback(), remote: .loopback(port: 1), transport: .reliableInOrderStream,
                                          security: .disabled)
        let tcp = preconnection.candidateStacks(for: .rendezvous).first { $0.stack.name == "tcp" }!
        XCTAssertFalse(tcp.qualifies)
        XCTAssertTrue(tcp.reasons.contains("cannot rendezvous"))
    }

    func testSecurityInterfaceNames() {
        XCTAssertEqual(SecurityInterface.all.count, 13)
        XCTAssertEqual(SecurityInterface(shortName: "pski"), .preSharedKeyImport)
        XCTAssertEqual(SecurityInterface([.sharedSecretKeyExport, .keyUpdate]).description, "KU,SSKE")
    }
}
