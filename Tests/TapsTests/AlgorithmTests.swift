import XCTest
@testable import Taps

/// ALG: suites, ciphers, groups and signature algorithms over real handshakes.
final class AlgorithmTests: XCTestCase {
    let pki = TestPKI.shared

    private func details(server: SecurityParameters? = nil, client: SecurityParameters) async throws -> SecurityDetails? {
        let listener = try await Preconnection(local: .loopback(), security: server ?? pki.serverSecurity).listen()
        defer { Task { await listener.stop() } }
        let connection = try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), security: client).initiate()
        let details = await connection.securityDetails
        await connection.abort()
        return details
    }

    func testTLS13SuiteAndGroupAreChosenAndReadable() async throws {
        var client = pki.clientSecurity
        client.algorithms.tls13CipherSuites = ["TLS_CHACHA20_POLY1305_SHA256"]
        client.algorithms.groups = ["X25519"]
        let chacha = try await details(client: client)
        XCTAssertEqual(chacha?.cipherSuite, "TLS_CHACHA20_POLY1305_SHA256")
        XCTAssertEqual(chacha?.group?.lowercased(), "x25519")

        client.algorithms.tls13CipherSuites = ["TLS_AES_128_GCM_SHA256"]
        client.algorithms.groups = ["P-256"]
        let aes = try await details(client: client)
        XCTAssertEqual(aes?.cipherSuite, "TLS_AES_128_GCM_SHA256")
        XCTAssertEqual(aes?.group, "secp256r1")
    }

    func testTLS12CipherList() async throws {
        var client = pki.clientSecurity
        client.allowedVersions = [.tls12]
        client.algorithms.tls12Ciphers = ["ECDHE-ECDSA-AES128-GCM-SHA256"]
        let details = try await details(client: client)
        XCTAssertEqual(details?.protocolVersion, "TLSv1.2")
        XCTAssertEqual(details?.cipherSuite, "ECDHE-ECDSA-AES128-GCM-SHA256")
    }

    func testSuiteChosenByOpenSSLServerIsReadable() async throws {
        let port = try await freePort()
        let server = try await ChildProcess.openSSLServer(port: port, ["-ciphersuites", "TLS_AES_128_GCM_SHA256"])
        defer { server.terminate() }
        let connection = try await Preconnection(remote: .host("localhost", port: port), security: pki.clientSecurity).initiate()
        let suite = await connection.securityDetails?.cipherSuite
        XCTAssertEqual(suite, "TLS_AES_128_GCM_SHA256")
        await connection.abort()
    }

    func testSignatureAlgorithmsConstrainTheHandshake() async throws {
        var client = pki.clientSecurity
        client.algorithms.signatureAlgorithms = ["ECDSA+SHA256"]
        let ok = try await details(client: client)
        XCTAssertNotNil(ok)
        // The server's key is ECDSA P-256: a client that accepts only RSA-PSS signatures cannot agree.
        client.algorithms.signatureAlgorithms = ["rsa_pss_rsae_sha256"]
        let listener = try await Preconnection(local: .loopback(), security: pki.serverSecurity).listen()
        _ = await XCTAssertThrowsTransportError(.handshakeFailed) {
            try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), security: client).initiate()
        }
        await listener.stop()
    }

    func testUnknownNamesFailBeforeAnyPacket() async throws {
        // Port 1 on loopback: any packet would end in connectionRefused instead.
        for (keyPath, name) in [(\SecurityParameters.Algorithms.tls13CipherSuites, "TLS_NOT_A_SUITE"),
                                (\.tls12Ciphers, "NOT-A-CIPHER"), (\.groups, "brainpoolP999r9"),
                                (\.signatureAlgorithms, "nonsense+SHA1")] {
            var client = pki.clientSecurity
            client.algorithms[keyPath: keyPath] = [name]
            let error = await XCTAssertThrowsTransportError(.invalidArgument) {
                try await Preconnection(remote: .loopback(port: 1), security: client).initiate()
            }
            XCTAssertTrue(error?.message.contains(name) ?? false, "\(String(describing: error))")
        }
    }

    func testNoSharedGroupFailsTheHandshake() async throws {
        var server = pki.serverSecurity
        server.algorithms.groups = ["P-384"]
        var client = pki.clientSecurity
        client.algorithms.groups = ["X25519"]
        let listener = try await Preconnection(local: .loopback(), security: server).listen()
        _ = await XCTAssertThrowsTransportError(.handshakeFailed) {
            try await Preconnection(remote: .host("localhost", port: listener.localAddress.port), security: client).initiate()
        }
        await listener.stop()
    }
}
