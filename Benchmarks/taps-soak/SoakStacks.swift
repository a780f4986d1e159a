import Taps

/// The two ends of a soak on one stack: the registry narrowed to that stack, the transport
/// properties it needs, and, on secure stacks, one self-signed identity that both ends present and
/// trust (dtls-chunk-sctp's key management authenticates both ends).
struct SoakStacks {
    static let names = ["tcp", "tls-tcp", "udp", "dtls-udp", "sctp", "tls-sctp", "dtls-chunk-sctp"]

    let stack: String
    let listenHost: String
    let connectHost: String
    let security: SecurityParameters

    init(stack: String, listenHost: String, connectHost: String) throws {
        self.stack = stack
        self.listenHost = listenHost
        self.connectHost = connectHost
        if ["tcp", "udp", "sctp"].contains(stack) {
            security = .disabled
        } else {
            let (identity, certificatePEM) = try SecurityParameters.Identity.selfSigned(names: ["localhost", listenHost, connectHost])
            var security = SecurityParameters.server(identity: identity)
            security.trustedRoots = .pem(.bytes(certificatePEM))
            self.security = security
        }
    }

    var isDatagram: Bool { stack == "udp" || stack == "dtls-udp" }

    private var transport: TransportProperties {
        switch stack {
        case "udp", "dtls-udp":
            return .unreliableDatagram
        case "sctp", "tls-sctp", "dtls-chunk-sctp":
            var transport = stack == "tls-sctp" ? TransportProperties.reliableInOrderStream : .reliableMessage
            transport.multistreaming = .require
            // Loopback round trips are microseconds. RFC 9260's timers (RTO.Min 1 s, doubling to
            // 60 s) are for real paths; on this one they make every lost retransmission a pause of
            // seconds, which measures the timers, not the stack. Linux TCP's 200 ms minimum is
            // the comparison point; these are tighter still, as SCTPLossTests use.
            transport.sctp.retransmissionTimeoutMinimum = .milliseconds(20)
            transport.sctp.retransmissionTimeoutInitial = .milliseconds(100)
            transport.sctp.retransmissionTimeoutMaximum = .seconds(1)
            return transport
        default:
            return .reliableInOrderStream
        }
    }

    private var registry: StackRegistry {
        StackRegistry(stacks: StackRegistry.standard.stacks.filter { $0.name == stack })
    }

    func server() -> Preconnection {
        var preconnection = Preconnection(local: .host(listenHost, port: 0), transport: transport, security: security)
        preconnection.registry = registry
        return preconnection
    }

    /// The client, with `faults` on its path (both directions) when given.
    func client(port: UInt16, faults: LossyPath?) -> Preconnection {
        var preconnection = Preconnection(remote: .host(connectHost, port: port), transport: transport, security: security)
        preconnection.registry = registry
        preconnection.lossyPath = faults
        return preconnection
    }
}
