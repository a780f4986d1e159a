internal import CLibUV
import Glibc

/// Name resolution through `uv_getaddrinfo` (libuv runs getaddrinfo on its thread pool and calls
/// back on the loop). Loop thread only.
enum Resolver {
    /// One lookup in flight; `cancel()` withdraws it if libuv has not started it yet.
    final class Request: RacingCancellable {
        let completion: (Result<[SocketAddress], TransportError>) -> Void
        /// The libuv request until its callback ran (which frees it).
        fileprivate var uvRequest: UnsafeMutablePointer<uv_getaddrinfo_t>?
        let host: String
        let port: UInt16
        let family: SocketAddress.Family?
        init(host: String, port: UInt16, family: SocketAddress.Family?,
             completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) {
            self.host = host; self.port = port; self.family = family; self.completion = completion
        }

        /// Loop thread only. A withdrawn lookup completes with a failure nobody listens to.
        func cancel() {
            guard let uvRequest else { return }
            uvRequest.withMemoryRebound(to: uv_req_t.self, capacity: 1) { _ = uv_cancel($0) }
        }
    }

    /// RFC 6761 section 6.3: localhost names are not sent to DNS servers. A query for one family
    /// would go on to DNS when the hosts file defines the name for the other family only (most
    /// define `localhost` as 127.0.0.1 alone), so these names are looked up for both families, from
    /// the hosts file, and the answer filtered.
    static func isLocalhostName(_ host: String) -> Bool {
        let name = host.lowercased()
        return name == "localhost" || name == "localhost." || name.hasSuffix(".localhost") || name.hasSuffix(".localhost.")
    }

    /// Resolves `host` to addresses of `family` (both families when nil, IPv6 first). An IP
    /// literal answers at once, with no address when it is of the other family.
    @discardableResult
    static func resolve(_ host: String, port: UInt16, family: SocketAddress.Family? = nil, on loop: EventLoop,
                        completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) -> Request? {
        if let literal = SocketAddress(ip: host, port: port) {
            completion(.success(family == nil || literal.family == family ? [literal] : []))
            return nil
        }
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        let lookup = Request(host: host, port: port, family: family, completion: completion)
        lookup.uvRequest = request
        request.pointee.data = Unmanaged.passRetained(lookup).toOpaque()
        var hints = addrinfo()
        hints.ai_family = switch family {
        case _ where isLocalhostName(host): AF_UNSPEC
        case .ipv6: AF_INET6
        case .ipv4: AF_INET
        case nil: AF_UNSPEC
        }
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let status = uv_getaddrinfo(loop.uvLoop, request, { request, status, info in
            guard let request else { return }
            let pending = Unmanaged<Request>.fromOpaque(request.pointee.data).takeRetainedValue()
            pending.uvRequest = nil
            request.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            guard status == 0 else {
                pending.completion(.failure(.resolutionFailed("could not resolve \(pending.host): \(String(cString: uv_strerror(status)))")))
                return
            }
            var addresses: [SocketAddress] = []
            var cursor = info
            while let entry = cursor {
                if let raw = entry.pointee.ai_addr, let address = SocketAddress(UnsafePointer(raw)), !addresses.contains(address),
                   pending.family == nil || address.family == pending.family {
                    addresses.append(address.withPort(pending.port))
                }
                cursor = entry.pointee.ai_next
            }
            pending.completion(addresses.isEmpty && pending.family == nil
                ? .failure(.resolutionFailed("\(pending.host) has no IPv4 or IPv6 address"))
                : .success(RaceStateMachine.interleaveFamilies(ipv6: addresses.filter { $0.family == .ipv6 },
                                                               ipv4: addresses.filter { $0.family == .ipv4 })))
        }, host, nil, &hints)
        if status != 0 {
            Unmanaged<Request>.fromOpaque(request.pointee.data).release()
            lookup.uvRequest = nil
            request.deallocate()
            completion(.failure(.resolutionFailed("could not resolve \(host): \(String(cString: uv_strerror(status)))")))
            return nil
        }
        return lookup
    }
}
