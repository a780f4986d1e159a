import Foundation
import XCTest
@testable import Taps

/// The system policy (RFC 9621; RFC 8922 section 1.2): each rule applied before the application's
/// preferences, explained by `candidateStacks()`, enforced on the wire; a malformed file is an error.
final class SystemPolicyTests: XCTestCase {
    let pki = TestPKI.shared

    private func policy(_ json: String) throws -> SystemPolicy {
        try SystemPolicy(json: Data(json.utf8), source: "test-policy.json")
    }

    private func report(_ reports: [CandidateReport], _ stack: String) throws -> CandidateReport {
        try XCTUnwrap(reports.first { $0.stack.name == stack }, "no report for \(stack)")
    }

    private func client(port: UInt16 = 9, policy: SystemPolicy?, security: SecurityParameters? = nil,
                        transport: TransportProperties = .reliableMessage) -> Preconnection {
        var preconnection = Preconnection(remote: .loopback(port: port), transport: transport, security: security ?? pki.clientSecurity,
                                          framer: LengthPrefixFramer())
        preconnection.policy = .success(policy)
        return preconnection
    }

    private func tlsListener(versions: Set<SecurityParameters.ProtocolVersion>? = nil) async throws -> Listener {
        var security = pki.serverSecurity
        if let versions { security.allowedVersions = versions }
        var server = Preconnection(local: .loopback(), transport: .reliableMessage, security: security, framer: LengthPrefixFramer())
        server.registry = StackRegistry(stacks: [.tlsTCP])
        server.policy = .success(nil)
        return try await server.listen()
    }

    func testMalformedFilesAreErrorsThatNameTheFileAndTheFault() throws {
        let cases = [
            ("not json", "not a JSON object"),
            (#"{"prohibitStack": ["udp"]}"#, "unknown key \"prohibitStack\""),
            (#"{"prohibitStacks": ["quic"]}"#, "unknown stack \"quic\""),
            (#"{"prohibitStacks": "udp"}"#, "must be a list of strings"),
            (#"{"minimumTLSVersion": "1.1"}"#, "minimumTLSVersion must be one of"),
            (#"{"minimumDTLSVersion": 1.2}"#, "minimumDTLSVersion must be one of"),
            (#"{"cipherSuites": ["TLS_AES_512_GCM"]}"#, "unknown TLS 1.3 suite"),
            (#"{"cipherSuites": []}"#, "cipherSuites is empty"),
            (#"{"requireInterfaces": ["XYZ"]}"#, "unknown interface \"XYZ\""),
            (#"{"requireInterfaces": ["IV"], "prohibitInterfaces": ["iv"]}"#, "both required and prohibited"),
        ]
        for (json, fault) in cases {
            XCTAssertThrowsError(try policy(json), json) { error in
                guard let error = error as? TransportError, error.code == .invalidArgument else { return XCTFail("\(error)") }
                let message = error.message
                XCTAssertTrue(message.contains("test-policy.json") && message.contains(fault), "\(json): \(message)")
            }
        }
        XCTAssertThrowsError(try SystemPolicy.load(path: "/nonexistent/taps-policy.json")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/taps-policy.json"), "\(error)")
        }
        XCTAssertEqual(try policy("{}"), SystemPolicy(source: "test-policy.json"), "an empty policy restricts nothing")
    }

    func testAMalformedPolicyFailsEveryPreconnectionAndRulesOutEveryStack() async throws {
        let broken = TransportError.invalidArgument("the system policy broken.json is malformed: not a JSON object")
        var preconnection = client(policy: nil)
        preconnection.policy = .failure(broken)
        let reports = preconnection.candidateStacks()
        XCTAssertFalse(reports.isEmpty)
        for report in reports {
            XCTAssertFalse(report.qualifies, report.description)
            XCTAssertTrue(report.reasons.contains { $0.contains("broken.json") }, report.description)
        }
        do {
            _ = try await preconnection.initiate()
            XCTFail("a malformed policy must not be ignored")
        } catch let error as TransportError {
            XCTAssertEqual(error, broken)
        }
        var listening = Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity, framer: LengthPrefixFramer())
        listening.policy = .failure(broken)
        do {
            _ = try await listening.listen()
            XCTFail("a malformed policy must not be ignored")
        } catch let error as TransportError {
            XCTAssertEqual(error, broken)
        }
    }

    func testAProhibitedStackIsRuledOutWhateverTheApplicationPrefers() async throws {
        let prohibiting = try policy(#"{"prohibitStacks": ["tls-tcp"]}"#)
        var preconnection = client(policy: prohibiting)
        let tls = try report(preconnection.candidateStacks(), "tls-tcp")
        XCTAssertFalse(tls.qualifies)
        XCTAssertTrue(tls.reasons.contains("prohibited by test-policy.json"), tls.description)
        XCTAssertTrue(try report(preconnection.candidateStacks(), "tls-sctp").qualifies, "the other secure stream stack stays")
        preconnection.registry = StackRegistry(stacks: [.tlsTCP])
        do {
            _ = try await preconnection.initiate()
            XCTFail("the only stack is prohibited")
        } catch let error as TransportError {
            XCTAssertEqual(error.code, .noCandidate)
            XCTAssertTrue(error.message.contains("prohibited by test-policy.json"), error.message)
        }
    }

    func testTheMinimumTLSVersionIsEnforcedOnTheWire() async throws {
        let listener = try await tlsListener(versions: [.tls12])
        defer { Task { await listener.stop() } }
        let echo = startEcho(listener)
        defer { echo.cancel() }
        var unconstrained = client(port: listener.localAddress.port, policy: nil)
        unconstrained.registry = StackRegistry(stacks: [.tlsTCP])
        let connection = try await unconstrained.initiate()
        let version = await connection.securityDetails?.protocolVersion
        XCTAssertEqual(version, "TLSv1.2", "without the policy the client accepts the server's TLS 1.2")
        await connection.close()

        var constrained = client(port: listener.localAddress.port, policy: try policy(#"{"minimumTLSVersion": "1.3"}"#))
        constrained.registry = StackRegistry(stacks: [.tlsTCP])
        do {
            _ = try await constrained.initiate(timeout: .seconds(5))
            XCTFail("the policy's TLS 1.3 minimum must refuse a TLS 1.2 server")
        } catch {}

        // An application that allows only TLS 1.2 is told why no TLS stack remains.
        var security = pki.clientSecurity
        security.allowedVersions = [.tls12]
        let reports = client(policy: try policy(#"{"minimumTLSVersion": "1.3"}"#), security: security).candidateStacks()
        let tls = try report(reports, "tls-tcp")
        XCTAssertFalse(tls.qualifies)
        XCTAssertTrue(tls.reasons.contains { $0.contains("not allowed by test-policy.json") }, tls.description)
    }

    func testTheMinimumDTLSVersionRulesOutDTLS12() throws {
        var security = pki.clientSecurity
        security.localIdentity = pki.identity("rsa")
        security.trustedRoots = .pem(file: pki.caPEM)
        let datagrams = client(policy: try policy(#"{"minimumDTLSVersion": "1.3"}"#), security: security, transport: .unreliableDatagram)
        let dtls = try report(datagrams.candidateStacks(), "dtls-udp")
        XCTAssertFalse(dtls.qualifies)
        XCTAssertTrue(dtls.reasons.contains { $0.contains("not allowed by test-policy.json") }, dtls.description)
        let withoutPolicy = client(policy: nil, security: security, transport: .unreliableDatagram)
        XCTAssertTrue(try report(withoutPolicy.candidateStacks(), "dtls-udp").qualifies)
        var messages = TransportProperties.reliableMessage
        messages.multistreaming = .require
        let chunk = try report(client(policy: try policy(#"{"minimumDTLSVersion": "1.3"}"#), security: security, transport: messages).candidateStacks(),
                               "dtls-chunk-sctp")
        XCTAssertTrue(chunk.qualifies, "the DTLS chunk's DTLS 1.3 meets the minimum: \(chunk)")
    }

    func testCipherSuitesAndGroupsNarrowWhatIsNegotiated() async throws {
        let listener = try await tlsListener()
        defer { Task { await listener.stop() } }
        let echo = startEcho(listener)
        defer { echo.cancel() }
        var preconnection = client(port: listener.localAddress.port,
                                   policy: try policy(#"{"cipherSuites": ["TLS_CHACHA20_POLY1305_SHA256"], "groups": ["P-256"]}"#))
        preconnection.registry = StackRegistry(stacks: [.tlsTCP])
        let connection = try await preconnection.initiate()
        let negotiated = await connection.securityDetails
        let details = try XCTUnwrap(negotiated)
        XCTAssertEqual(details.protocolVersion, "TLSv1.3", "no TLS 1.2 cipher is allowed, so TLS 1.2 is not offered")
        XCTAssertEqual(details.cipherSuite, "TLS_CHACHA20_POLY1305_SHA256")
        XCTAssertEqual(details.group, "secp256r1")
        await connection.close()

        // The application's own list is narrowed, not replaced; nothing in common rules TLS out.
        var security = pki.clientSecurity
        security.algorithms.groups = ["X25519"]
        let reports = client(policy: try policy(#"{"groups": ["P-256"]}"#), security: security).candidateStacks()
        let tls = try report(reports, "tls-tcp")
        XCTAssertFalse(tls.qualifies)
        XCTAssertTrue(tls.reasons.contains { $0.contains("no key-exchange group both the application (X25519) and test-policy.json allow") },
                      tls.description)
    }

    func testRequiredAndProhibitedInterfacesComeBeforeTheApplicationsPreferences() throws {
        let requiringKU = try policy(#"{"requireInterfaces": ["KU"]}"#)
        let datagrams = client(policy: requiringKU, transport: .unreliableDatagram)
        let dtls = try report(datagrams.candidateStacks(), "dtls-udp")
        XCTAssertFalse(dtls.qualifies)
        XCTAssertTrue(dtls.reasons.contains("KU required by test-policy.json, DTLS here does not expose it"), dtls.description)
        XCTAssertTrue(try report(client(policy: requiringKU).candidateStacks(), "tls-tcp").qualifies)

        var avoiding = pki.clientSecurity
        avoiding.prohibit(.keyUpdate)
        let conflicting = try report(client(policy: requiringKU, security: avoiding).candidateStacks(), "tls-tcp")
        XCTAssertFalse(conflicting.qualifies)
        XCTAssertTrue(conflicting.reasons.contains("KU prohibited by the application, required by test-policy.json"), conflicting.description)

        let prohibitingSAV = try policy(#"{"prohibitInterfaces": ["SAV"]}"#)
        var wanting = pki.clientSecurity
        wanting.prefer(.sourceAddressValidation)
        let dtlsOut = try report(client(policy: prohibitingSAV, security: wanting, transport: .unreliableDatagram).candidateStacks(), "dtls-udp")
        XCTAssertFalse(dtlsOut.qualifies)
        XCTAssertTrue(dtlsOut.reasons.contains("SAV prohibited by test-policy.json, DTLS exposes it"), dtlsOut.description)

        let plain = client(policy: requiringKU, security: .disabled, transport: .reliableInOrderStream)
        let tcp = try report(plain.candidateStacks(), "tcp")
        XCTAssertFalse(tcp.qualifies)
        XCTAssertTrue(tcp.reasons.contains("test-policy.json requires KU; security is disabled"), tcp.description)
    }

    func testTheEnvironmentVariableNamesThePolicyOfAnApplicationThatSetsNothing() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("taps-policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prohibiting = directory.appendingPathComponent("policy.json").path
        try Data(#"{"prohibitStacks": ["tls-tcp", "tls-sctp"]}"#.utf8).write(to: URL(fileURLWithPath: prohibiting))
        let malformed = directory.appendingPathComponent("malformed.json").path
        try Data(#"{"minimumTLSVersion": "1.0"}"#.utf8).write(to: URL(fileURLWithPath: malformed))
        let arguments = ["connect", "127.0.0.1", "9", "--ca", pki.caPEM, "--message", "x", "--timeout", "3"]

        let refused = try ChildProcess(ChildProcess.product("taps-echo"), arguments, environment: [SystemPolicy.environmentVariable: prohibiting])
        let refusedStatus = await refused.finish()
        XCTAssertNotEqual(refusedStatus, 0)
        XCTAssertTrue(refused.text.contains("prohibited by \(prohibiting)"), refused.text)

        let broken = try ChildProcess(ChildProcess.product("taps-echo"), arguments, environment: [SystemPolicy.environmentVariable: malformed])
        let brokenStatus = await broken.finish()
        XCTAssertNotEqual(brokenStatus, 0)
        XCTAssertTrue(broken.text.contains("the system policy \(malformed) is malformed"), broken.text)
    }
}
