import Foundation
import XCTest
import Taps

/// The README's code sample, compiled here and run against a local listener, so it cannot rot: the
/// test checks that the README still shows exactly this code (but for the port, 4433 there).
final class ReadmeSampleTests: XCTestCase {
    /// The sample as the README shows it, with `port` for 4433 and `return` added at the end.
    func readmeSample(port: UInt16) async throws -> (stack: String, reply: String?, clone: Connection) {
        // README sample begin
        var security = SecurityParameters.clientDefault          // TLS 1.2+, certificate and name validated
        security.trustedRoots = .pem(file: "ca.pem")
        let preconnection = Preconnection(remote: .host("localhost", port: port),
                                          transport: .reliableMessage,   // RFC 9622 profile
                                          security: security,
                                          framer: LengthPrefixFramer())   // message boundaries over streams
        print(preconnection.candidateStacks().table)             // which stacks qualify, and why
        let connection = try await preconnection.initiate()      // resolves, races candidates, first ready wins
        try await connection.send("hello")
        let reply = try await connection.receive()
        print(connection.stack.name, reply.text)                 // "tls-tcp hello"
        let second = try await connection.clone()                 // same group, resumes the TLS session
        await connection.close()                                  // close_notify, then FIN
        // README sample end
        return (connection.stack.name, reply.text, second)
    }

    func testTheReadmeShowsThisSample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let block = try XCTUnwrap(readme.components(separatedBy: "```swift\n").dropFirst().first?.components(separatedBy: "```").first)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let sample = try XCTUnwrap(source.components(separatedBy: "// README sample begin\n").dropFirst().first?
            .components(separatedBy: "        // README sample end").first)
        let unindented = sample.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("        ") ? String($0.dropFirst(8)) : String($0) }.joined(separator: "\n")
            .replacingOccurrences(of: "port: port)", with: "port: 4433)")
        XCTAssertEqual(block, "import Taps\n\n" + unindented)
    }

    func testTheSampleRunsAgainstALocalListener() async throws {
        let pki = TestPKI.shared
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: pki.serverSecurity,
                                               framer: LengthPrefixFramer()).listen()
        let echo = startEcho(listener)
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(pki.directory.path))  // the sample's "ca.pem"
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        let result = try await readmeSample(port: listener.localAddress.port)
        XCTAssertEqual(result.stack, "tls-tcp")
        XCTAssertEqual(result.reply, "hello")
        let cloneDetails = await result.clone.securityDetails
        let details = try XCTUnwrap(cloneDetails)
        XCTAssertTrue(details.resumed, "the clone resumed the first connection's session")
        await result.clone.close()
        await listener.stop()
        echo.cancel()
    }
}
