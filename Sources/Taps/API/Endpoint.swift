/// A local or remote endpoint (RFC 9622 section 6.1): a host name or IP address, and a port.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// How an endpoint names its host.
    public enum Host: Sendable, Hashable {
        /// A DNS name, resolved when the connection is established.
        case name(String)
        /// An IPv4 or IPv6 literal.
        case address(SocketAddress)
        /// Any local address (local endpoints only): the IPv6 wildcard, which accepts IPv4 too.
        case any
    }

    /// The host: a name, an address or the wildcard.
    public var host: Host
    /// The port; 0 on a local endpoint asks for an ephemeral one.
    public var port: UInt16

    /// An endpoint of `host` and `port`.
    public init(host: Host, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// A host name or an IP literal; literals skip resolution.
    public static func host(_ name: String, port: UInt16) -> Endpoint {
        if let address = SocketAddress(ip: name, port: port) { return Endpoint(host: .address(address), port: port) }
        return Endpoint(host: .name(name), port: port)
    }

    /// An IP literal; nil when `ip` is not one.
    public static func ip(_ ip: String, port: UInt16) -> Endpoint? {
        SocketAddress(ip: ip, port: port).map { Endpoint(host: .address($0), port: port) }
    }

    /// Any local address on `port` (0: an ephemeral port).
    public static func any(port: UInt16 = 0) -> Endpoint { Endpoint(host: .any, port: port) }

    /// The IPv4 loopback address, 127.0.0.1, on `port` (0: an ephemeral port).
    public static func loopback(port: UInt16 = 0) -> Endpoint { .host("127.0.0.1", port: port) }

    /// The host name to check a certificate against, when the endpoint names one.
    public var hostName: String? {
        if case .name(let name) = host { return name }
        return nil
    }

    /// `name:port`, the address with its port, or `*:port` for the wildcard.
    public var description: String {
        switch host {
        case .name(let name): return "\(name):\(port)"
        case .address(let address): return address.description
        case .any: return "*:\(port)"
        }
    }
}

/// An endpoint on this host (RFC 9622 section 6.1's Local Endpoint).
public typealias LocalEndpoint = Endpoint
/// An endpoint of the peer (RFC 9622 section 6.1's Remote Endpoint).
public typealias RemoteEndpoint = Endpoint
