import XCTest
@testable import Taps

/// A listener does not hold an incoming connection whose establishment never finishes (issue 16).
final class ListenerTimeoutTests: XCTestCase {
    /// A peer that sends half a ClientHello and stops: after the listener's time limit the
    /// connection is aborted (the peer sees it end) and counted as a failed establishment.
    func testHalfAClientHelloTimesOut() async throws {
        let pki = TestPKI.shared
        var transport = TransportProperties.reliableInOrderStream
        transport.incomingEstablishmentTimeout = .milliseconds(300)
        var server = Preconnection(local: .loopback(), transport: transport, security: pki.serverSecurity)
        server.registry = StackRegistry(stacks: [.tlsTCP])
        let listener = try await server.listen()
        var client = Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableInOrderStream, security: .disabled)
        client.registry = StackRegistry(stacks: [.tcp])
        let stalled = try await client.initiate(timeout: .seconds(5))
        try await stalled.send([0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00])  // a handshake record header, 200 bytes promised
        let watchdog = abort(stalled, after: .seconds(10))
        defer { watchdog.cancel() }
        // The listener's abort reaches the client as a reset or an end, well before the watchdog's.
        var ended = false
        while !ended {
            do {
                let message = try await stalled.receive()
                ended = message.isFinal
            } catch {
                XCTAssertNotEqual((error as? TransportError)?.code, .aborted, "the listener never dropped the stalled connection")
                ended = true
            }
        }
        let failures = await listener.failedEstablishments
        let error = await listener.lastEstablishmentError
        XCTAssertEqual(failures, 1)
        XCTAssertEqual(error?.code, .timedOut, "\(String(describing: error))")
        await stalled.abort()
        await listener.stop()
    }
}
