internal import CLibUV
import Foundation

/// An IPv4 or IPv6 socket address (address + port).
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// A sockaddr_in6 holds either family (a sockaddr_in is its first 16 bytes). Not a
    /// sockaddr_storage: every received message's context carries two addresses, and at 128 bytes
    /// each, copying contexts showed in the receive path's profile.
    var storage: sockaddr_in6

    /// The address family.
    public enum Family: Sendable {
        /// AF_INET.
        case ipv4
        /// AF_INET6.
        case ipv6
    }

    init(storage: sockaddr_storage) {
        var compact = sockaddr_in6()
        withUnsafeBytes(of: storage) { source in
            withUnsafeMutableBytes(of: &compact) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[..<$0.count])) }
        }
        self.storage = compact
    }

    init?(_ address: UnsafePointer<sockaddr>) {
        var storage = sockaddr_in6()
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: MemoryLayout<sockaddr_in>.size)) }
        case AF_INET6:
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: MemoryLayout<sockaddr_in6>.size)) }
        default:
            return nil
        }
        self.storage = storage
    }

    /// Parses an IPv4 or IPv6 literal (no host names; those go through the resolver).
    public init?(ip: String, port: UInt16) {
        var storage = sockaddr_in6()
        let ok = withUnsafeMutablePointer(to: &storage) { v6 -> Bool in
            if uv_ip6_addr(ip, Int32(port), v6) == 0 { return true }
            return v6.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(ip, Int32(port), $0) == 0 }
        }
        guard ok else { return nil }
        self.storage = storage
    }

    /// IPv4 or IPv6.
    public var family: Family { Int32(storage.sin6_family) == AF_INET6 ? .ipv6 : .ipv4 }

    /// The port.
    public var port: UInt16 {
        withUnsafeSockaddr { pointer in
            switch family {
            case .ipv4: return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            case .ipv6: return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
        }
    }

    /// The address without the port, as text.
    public var ipAddress: String {
        var buffer = [CChar](repeating: 0, count: 64)
        withUnsafeSockaddr { pointer in
            switch family {
            case .ipv4: _ = pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_name($0, &buffer, buffer.count) }
            case .ipv6: _ = pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_name($0, &buffer, buffer.count) }
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `a.b.c.d:port` or `[v6]:port`.
    public var description: String {
        family == .ipv6 ? "[\(ipAddress)]:\(port)" : "\(ipAddress):\(port)"
    }

    func withPort(_ port: UInt16) -> SocketAddress {
        var copy = self
        withUnsafeMutablePointer(to: &copy.storage) { pointer in
            switch family {
            case .ipv4: pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = port.bigEndian }
            case .ipv6: pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = port.bigEndian }
            }
        }
        return copy
    }

    func withUnsafeSockaddr<R>(_ body: (UnsafePointer<sockaddr>) throws -> R) rethrows -> R {
        try withUnsafePointer(to: storage) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }

    /// Family, port and address bytes packed for comparison and hashing (the UDP demultiplexing
    /// path hashes addresses per datagram, so this avoids formatting text).
    private var key: (UInt64, UInt64, UInt32) {
        withUnsafeSockaddr { pointer in
            switch family {
            case .ipv4:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    (0, UInt64($0.pointee.sin_addr.s_addr), UInt32($0.pointee.sin_port) | 4 << 16)
                }
            case .ipv6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                    withUnsafeBytes(of: v6.pointee.sin6_addr) { bytes in
                        (bytes.load(fromByteOffset: 0, as: UInt64.self), bytes.load(fromByteOffset: 8, as: UInt64.self),
                         UInt32(v6.pointee.sin6_port) | 6 << 16 | (v6.pointee.sin6_scope_id & 0xff) << 24)
                    }
                }
            }
        }
    }

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.key == rhs.key
    }

    public func hash(into hasher: inout Hasher) {
        let key = key
        hasher.combine(key.0)
        hasher.combine(key.1)
        hasher.combine(key.2)
    }
}
