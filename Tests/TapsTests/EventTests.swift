import XCTest
@testable import Taps

/// The RFC 9622 events that are not covered elsewhere.
final class EventTests: XCTestCase {
    func testEventModeDeliversReceivedEvents() async throws {
        let listener = try await Preconnection(local: .loopback(), transport: .reliableMessage, security: .disabled,
                                               framer: LengthPrefixFramer()).listen()
        let echo = startEcho(listener)
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), transport: .reliableMessage,
                                                 security: .disabled, framer: LengthPrefixFramer()).initiate()
        let events = await connection.events()
        await connection.setReceiveMode(.events)
        try await connection.send("one")
        try await connection.send("two")
        var texts: [String] = []
        for await event in events {
            if case .received(let message) = event { texts.append(message.text) }
            if texts.count == 2 { break }
        }
        XCTAssertEqual(texts, ["one", "two"])
        await connection.close()
        await listener.stop()
        echo.cancel()
    }

    func testPartialEventsOnAByteStream() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let accepted = try await listener.firstConnection()
        let events = await accepted.events()
        await accepted.setReceiveMode(.events)
        try await connection.send("partial", context: MessageContext(properties: .final))
        var partial = "", sawFinal = false
        for await event in events {
            switch event {
            case .receivedPartial(let message): partial += message.text
            case .received(let message) where message.isFinal: sawFinal = true
            default: break
            }
            if sawFinal { break }
        }
        XCTAssertEqual(partial, "partial")
        await accepted.abort()
        await connection.abort()
        await listener.stop()
    }

    func testMessageExpiresBehindBackPressure() async throws {
        // The peer never reads, so queued data grows past the high-water mark and a message with a
        // short lifetime expires instead of waiting forever.
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let accepted = try await listener.firstConnection()
        let events = await connection.events()
        let chunk = [UInt8](repeating: 1, count: 1 << 20)
        var context = MessageContext()
        context.properties.lifetime = .milliseconds(100)
        var expired: TransportError?
        for _ in 0..<256 {
            do {
                try await connection.send(chunk, context: context)
            } catch let error as TransportError {
                expired = error
                break
            }
        }
        XCTAssertEqual(expired?.code, .timedOut, "a send must expire once the peer stops reading")
        await connection.abort()
        var sawExpired = false
        for await event in events { if case .expired = event { sawExpired = true } }
        XCTAssertTrue(sawExpired)
        await accepted.abort()
        await listener.stop()
    }

    /// Sends 64 KB messages with a short lifetime to a peer that never reads, until one expires;
    /// returns the connection's mark and the most application data it held waiting meanwhile.
    private func mostHeldForAStalledPeer(security: SecurityParameters, serverSecurity: SecurityParameters)
        async throws -> (mark: Int, mostWaiting: Int) {
        let listener = try await Preconnection(local: .loopback(), security: serverSecurity).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: security).initiate()
        let accepted = try await listener.firstConnection()
        let chunk = [UInt8](repeating: 2, count: 64 * 1024)
        var context = MessageContext()
        context.properties.lifetime = .milliseconds(100)
        var sent = 0
        var mostWaiting = 0
        while sent < 256 * 1024 * 1024 {
            do {
                try await connection.send(chunk, context: context)
            } catch {
                break
            }
            sent += chunk.count
            mostWaiting = max(mostWaiting, await connection.inflightBytes)
        }
        XCTAssertLessThan(sent, 256 * 1024 * 1024, "a send must eventually wait for the peer that stopped reading")
        await connection.abort()
        await accepted.abort()
        await listener.stop()
        return (connection.sendHighWater, mostWaiting)
    }

    func testATLSStreamHoldsAtMostHalfAMegabyteForAPeerThatStopsReading() async throws {
        let pki = TestPKI.shared
        let (mark, mostWaiting) = try await mostHeldForAStalledPeer(security: pki.clientSecurity, serverSecurity: pki.serverSecurity)
        XCTAssertEqual(mark, 512 * 1024)
        XCTAssertGreaterThan(mostWaiting, mark, "the queue fills up to the mark before send waits")
        XCTAssertLessThanOrEqual(mostWaiting, mark + 64 * 1024, "at most the mark and the message that crossed it")
    }

    func testATCPStreamHoldsAtMostFourMegabytesForAPeerThatStopsReading() async throws {
        let (mark, mostWaiting) = try await mostHeldForAStalledPeer(security: .disabled, serverSecurity: .disabled)
        XCTAssertEqual(mark, 4 * 1024 * 1024)
        XCTAssertGreaterThan(mostWaiting, mark, "the queue fills up to the mark before send waits")
        XCTAssertLessThanOrEqual(mostWaiting, mark + 64 * 1024, "at most the mark and the message that crossed it")
    }

    func testICMPUnreachableIsASoftError() async throws {
        let port = try await freePort(udp: true)
        let connection = try await Preconnection(remote: .loopback(port: port), transport: .unreliableDatagram, security: .disabled).initiate()
        let events = await connection.events()
        var softErrors: [TransportError] = []
        for _ in 0..<3 {
            try await connection.send("anyone?")
            try await Task.sleep(for: .milliseconds(30))
        }
        await connection.close()
        for await event in events { if case .softError(let error) = event { softErrors.append(error) } }
        XCTAssertFalse(softErrors.isEmpty, "port unreachable should be reported")
        XCTAssertEqual(softErrors.first?.code, .connectionRefused)
    }

    func testCloneErrorOnAnAcceptedConnection() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), security: .disabled).initiate()
        let accepted = try await listener.firstConnection()
        let events = await accepted.events()
        _ = await XCTAssertThrowsTransportError(.notSupported) { try await accepted.clone() }
        await accepted.abort()
        var sawCloneError = false
        for await event in events { if case .cloneError = event { sawCloneError = true } }
        XCTAssertTrue(sawCloneError)
        await connection.abort()
        await listener.stop()
    }

    func testReceiveOnlyConnectionRefusesToSend() async throws {
        let listener = try await Preconnection(local: .loopback(), security: .disabled).listen()
        var properties = TransportProperties.reliableInOrderStream
        properties.direction = .unidirectionalReceive
        let connection = try await Preconnection(remote: .loopback(port: listener.localAddress.port), transport: properties,
                                                 security: .disabled).initiate()
        let canSend = await connection.canSend
        XCTAssertFalse(canSend)
        _ = await XCTAssertThrowsTransportError(.invalidArgument) { try await connection.send("no") }
        await connection.abort()
        await listener.stop()
    }
}
