import Foundation
import Taps

/// Association set-ups per second through the public API, one after another, both ends in this
/// process: `initiate()` until the connection is ready (for dtls-chunk-sctp: the SCTP handshake,
/// then the key management: a DTLS 1.3 or TLS 1.3 handshake, or nothing with pre-shared keys; for tls-sctp: the
/// SCTP handshake and the first stream's full TLS 1.3 handshake), then an abort. Listeners issue no
/// tickets, so every handshake is a full one, unless `resume` lets the DTLS 1.3 key management
/// resume the session of the set-up before.
enum AssociationSetupBench {
    enum Kind: String, CaseIterable, Sendable {
        case dtls13, tls13, psk, tlsSCTP = "tls-sctp"
    }

    static func rate(_ kind: Kind, resume: Bool = false, seconds: Double, cert: String, key: String, chunkKeys: String) async throws -> Double {
        var transport = kind == .tlsSCTP ? TransportProperties.reliableInOrderStream : .reliableMessage
        transport.multistreaming = .require
        var serverSecurity = SecurityParameters(), clientSecurity = SecurityParameters()
        switch kind {
        case .dtls13, .tls13:
            // Both ends present the bench's certificate and trust it.
            serverSecurity.localIdentity = .pemFiles(certificate: cert, key: key)
            serverSecurity.trustedRoots = .pem(file: cert)
            serverSecurity.dtlsChunkKeyManagement = [kind == .tls13 ? .tls13 : .dtls13]
            clientSecurity = serverSecurity
        case .psk:
            var keys = try DTLSChunkPreSharedKeys(jsonFile: chunkKeys)
            keys.allowsReuseAcrossAssociations = true  // thousands of set-ups under one key file: measured, not secret
            serverSecurity.dtlsChunkKeys = keys
            clientSecurity = serverSecurity
        case .tlsSCTP:
            serverSecurity = .server(identity: .pemFiles(certificate: cert, key: key))
            clientSecurity.trustedRoots = .pem(file: cert)
        }
        serverSecurity.sessionTickets = resume
        let stack: ProtocolStack = kind == .tlsSCTP ? .tlsSCTP : .dtlsChunkSCTP
        var server = Preconnection(local: .loopback(), transport: transport, security: serverSecurity)
        server.registry = StackRegistry(stacks: [stack])
        let listener = try await server.listen()
        let accepting = Task(executorPreference: listener.loop) {
            for await connection in listener.connections { await connection.abort() }
        }
        var client = Preconnection(remote: .host("localhost", port: listener.localAddress.port), transport: transport, security: clientSecurity)
        client.registry = StackRegistry(stacks: [stack])
        // Client and listener share the loop, and the set-ups run on it, as an application's tasks
        // prefer their connections' loop (GettingStarted): no hop to another thread per set-up.
        client.loop = listener.loop
        let rate = try await Task(executorPreference: listener.loop) {
            try await operationsPerSecond(for: seconds) { _ in
                let connection = try await client.initiate()
                await connection.abortGroup()
                return 1
            }
        }.value
        await listener.stop()
        accepting.cancel()
        return rate
    }
}

import ArgumentParser

extension AssociationSetupBench.Kind: ExpressibleByArgument {}
