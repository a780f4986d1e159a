internal import CLibUV
import Glibc

/// Name resolution through `uv_getaddrinfo` (libuv runs getaddrinfo on its thread pool and calls
/// back on the loop). Loop thread only.
enum Resolver {
    private final class Request {
        let completion: (Result<[SocketAddress], TransportError>) -> Void
        let host: String
        let port: UInt16
        init(host: String, port: UInt16, completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) {
            self.host = host; self.port = port; self.completion = completion
        }
    }

    /// Resolves `host` to addresses, ordered for racing: IPv6 first, then alternating families
    /// (RFC 8305 section 4, "First Address Family Count" of 1).
    static func resolve(_ host: String, port: UInt16, on loop: EventLoop,
                        completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) {
        if let literal = SocketAddress(ip: host, port: port) {
            completion(.success([literal]))
            return
        }
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(Request(host: host, port: port, completion: completion)).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let status = uv_getaddrinfo(loop.uvLoop, request, { request, status, info in
            guard let request else { return }
            let pending = Unmanaged<Request>.fromOpaque(request.pointee.data).takeRetainedValue()
            request.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            guard status == 0 else {
                pending.completion(.failure(.resolutionFailed("could not resolve \(pending.host): \(String(cString: uv_strerror(status)))")))
                return
            }
            var addresses: [SocketAddress] = []
            var cursor = info
            while let entry = cursor {
                if let raw = entry.pointee.ai_addr, let address = SocketAddress(UnsafePointer(raw)), !addresses.contains(address) {
                    addresses.append(address.withPort(pending.port))
                }
                cursor = entry.pointee.ai_next
            }
            pending.completion(addresses.isEmpty
                ? .failure(.resolutionFailed("\(pending.host) has no IPv4 or IPv6 address"))
                : .success(Resolver.interleaveFamilies(addresses)))
        }, host, nil, &hints)
        if status != 0 {
            Unmanaged<Request>.fromOpaque(request.pointee.data).release()
            request.deallocate()
            completion(.failure(.resolutionFailed("could not resolve \(host): \(String(cString: uv_strerror(status)))")))
        }
    }

    /// Resolves several endpoints and merges their addresses in racing order. Fails only when no
    /// endpoint resolves (with the first endpoint's error).
    static func resolve(_ endpoints: [Endpoint], on loop: EventLoop,
                        completion: @escaping (Result<[SocketAddress], TransportError>) -> Void) {
        var results: [Result<[SocketAddress], TransportError>?] = Array(repeating: nil, count: endpoints.count)
        var remaining = endpoints.count
        for (index, endpoint) in endpoints.enumerated() {
            resolve(endpoint.hostForResolution, port: endpoint.port, on: loop) { result in
                results[index] = result
                remaining -= 1
                guard remaining == 0 else { return }
                var addresses: [SocketAddress] = []
                for case .success(let resolved)? in results {
                    addresses += resolved.filter { !addresses.contains($0) }
                }
                if addresses.isEmpty, case .failure(let error)? = results.first {
                    completion(.failure(error))
                } else {
                    completion(.success(interleaveFamilies(addresses)))
                }
            }
        }
    }

    static func interleaveFamilies(_ addresses: [SocketAddress]) -> [SocketAddress] {
        let v6 = addresses.filter { $0.family == .ipv6 }
        let v4 = addresses.filter { $0.family == .ipv4 }
        var ordered: [SocketAddress] = []
        for index in 0..<max(v6.count, v4.count) {
            if index < v6.count { ordered.append(v6[index]) }
            if index < v4.count { ordered.append(v4[index]) }
        }
        return ordered
    }
}
