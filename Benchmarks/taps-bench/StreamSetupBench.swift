import Foundation
import Taps

/// tls-sctp stream set-ups per second through the public API: a new stream of an association with
/// its TLS handshake, one after another (each clone ready before the next), resumed from the
/// first stream's session (`resumeFirst`) or a full handshake each (`parallel`). Both ends run in
/// this process, on the SCTP loop. An association that runs out of streams is aborted and the next
/// one opened; its first stream counts too, with its full handshake.
enum StreamSetupBench {
    /// `tls12`: TLS 1.2 only, whose abbreviated handshake has no key exchange at all (TLS 1.3's
    /// resumption keeps an ECDHE exchange for forward secrecy).
    static func rate(pattern: SCTPOptions.TLSHandshakes, seconds: Double, cert: String, key: String, mtu: Int,
                     tls12: Bool) async throws -> Double {
        let configure = { (transport: inout TransportProperties) in
            transport.multistreaming = .require
            transport.sctp.pathMTU = mtu
            transport.sctp.streams = 2048  // 1,024 streams a client can open per association
            transport.sctp.tlsHandshakes = pattern
            transport.isolateSession = true  // no session from an earlier association: only the pattern decides
        }
        var serverTransport = TransportProperties.reliableInOrderStream
        configure(&serverTransport)
        var serverSecurity = SecurityParameters.server(identity: .pemFiles(certificate: cert, key: key))
        if tls12 { serverSecurity.allowedVersions = [.tls12] }
        var server = Preconnection(local: .loopback(), transport: serverTransport, security: serverSecurity)
        server.registry = StackRegistry(stacks: [.tlsSCTP])
        let listener = try await server.listen()
        // Accepted streams are held until the client aborts the association.
        let accepting = Task(executorPreference: listener.loop) {
            var held: [Connection] = []
            for await connection in listener.connections { held.append(connection) }
            for connection in held { await connection.abort() }
        }
        var security = SecurityParameters.clientDefault
        security.trustedRoots = .pem(file: cert)
        var clientTransport = TransportProperties.reliableInOrderStream
        configure(&clientTransport)
        var client = Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: clientTransport, security: security)
        client.registry = StackRegistry(stacks: [.tlsSCTP])

        // One association per step: its first stream, then clones until it runs out of streams.
        let rate = try await operationsPerSecond(for: seconds) { deadline in
            let first = try await client.initiate()
            // On the association's loop, as an application's tasks prefer it (GettingStarted):
            // each clone is then set up and awaited without a hop to another thread.
            return await Task(executorPreference: first.loop) {
                var count = 1
                while ContinuousClock.now < deadline {
                    guard let clone = try? await first.clone() else { break }  // out of streams
                    count += 1
                    await clone.abort()
                }
                await first.abortGroup()
                return count
            }.value
        }
        await listener.stop()
        accepting.cancel()
        return rate
    }
}
