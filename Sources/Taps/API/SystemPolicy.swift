import Foundation

/// What the host allows applications to use (RFC 9621 section 3.2's system policy; RFC 8922 section
/// 1.2: the system may constrain the security protocols and their configuration). It applies before
/// the application's own properties and preferences: a stack it prohibits is never a candidate, its
/// minimum versions and algorithm lists narrow `SecurityParameters`, and the interfaces it requires
/// or prohibits weigh as `require` / `prohibit` whatever the application prefers.
/// `Preconnection.candidateStacks()` names the policy in every reason it causes.
///
/// The file is JSON, read once per process from `TAPS_POLICY`, or from `/etc/taps/policy.json` when
/// that variable is unset and the file exists (Docs/Security.md, "System policy"):
///
/// ```json
/// { "prohibitStacks": ["udp", "tcp"], "minimumTLSVersion": "1.3", "minimumDTLSVersion": "1.2",
///   "cipherSuites": ["TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"],
///   "groups": ["X25519", "P-256"], "requireInterfaces": ["IV"], "prohibitInterfaces": ["PSKI"] }
/// ```
///
/// Every key is optional; an unknown key, stack, version or interface makes the file malformed, and a
/// malformed or unreadable file fails every `initiate()`, `listen()` and `rendezvous()` with
/// `invalidArgument` naming the file (and rules out every stack in `candidateStacks()`): a policy is
/// never ignored.
public struct SystemPolicy: Sendable, Hashable {
    /// Stacks by name (`ProtocolStack.name`) that may not be used.
    public var prohibitedStacks: Set<String> = []
    /// The lowest TLS version allowed (`.tls12` or `.tls13`); nil: whatever the application allows.
    public var minimumTLSVersion: SecurityParameters.ProtocolVersion?
    /// The lowest DTLS version allowed (`.dtls12` or `.dtls13`).
    public var minimumDTLSVersion: SecurityParameters.ProtocolVersion?
    /// The cipher suites allowed: TLS 1.3 suites by their IANA names (`TLS_AES_256_GCM_SHA384`) and
    /// TLS / DTLS 1.2 ciphers by OpenSSL's names. nil: no restriction. A version none of whose
    /// suites is listed is not used.
    public var cipherSuites: [String]?
    /// The key-exchange groups allowed (OpenSSL's names: X25519, P-256, X25519MLKEM768, ...).
    public var groups: [String]?
    /// Security interfaces every connection must have: only secure stacks that expose them qualify.
    public var requiredInterfaces: SecurityInterface = []
    /// Security interfaces no connection may use: stacks that expose them are ruled out.
    public var prohibitedInterfaces: SecurityInterface = []
    /// Where the policy came from, named in every reason and error it causes.
    public var source: String

    /// A policy that allows everything, named `source` in reasons and errors.
    public init(source: String = "the system policy") {
        self.source = source
    }

    /// The environment variable that names the policy file.
    public static let environmentVariable = "TAPS_POLICY"
    /// The file read when `TAPS_POLICY` is unset, if it exists.
    public static let defaultPath = "/etc/taps/policy.json"

    /// This process's policy (nil: none), read once; a malformed file is an error every time.
    public static func current() throws(TransportError) -> SystemPolicy? {
        try processPolicy.get()
    }

    static let processPolicy: Result<SystemPolicy?, TransportError> = {
        let environment = ProcessInfo.processInfo.environment[environmentVariable]
        if let path = environment, path.isEmpty { return .success(nil) }  // TAPS_POLICY= turns it off
        let path = environment ?? defaultPath
        guard environment != nil || FileManager.default.fileExists(atPath: path) else { return .success(nil) }
        do throws(TransportError) { return .success(try load(path: path)) } catch { return .failure(error) }
    }()

    /// Reads a policy file.
    public static func load(path: String) throws(TransportError) -> SystemPolicy {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("the system policy \(path) cannot be read")
        }
        return try SystemPolicy(json: data, source: path)
    }

    private static let keys: Set<String> = ["prohibitStacks", "minimumTLSVersion", "minimumDTLSVersion", "cipherSuites",
                                            "groups", "requireInterfaces", "prohibitInterfaces"]
    private static let tls13SuiteNames: Set<String> = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                                                       "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]

    /// Parses a policy in the file format above; `source` names it in errors.
    public init(json: Data, source: String) throws(TransportError) {
        self.init(source: source)
        func malformed(_ why: String) -> TransportError { .invalidArgument("the system policy \(source) is malformed: \(why)") }
        guard let object = try? JSONSerialization.jsonObject(with: json), let fields = object as? [String: Any] else {
            throw malformed("not a JSON object")
        }
        if let unknown = fields.keys.filter({ !Self.keys.contains($0) }).sorted().first {
            throw malformed("unknown key \"\(unknown)\" (known: \(Self.keys.sorted().joined(separator: ", ")))")
        }
        func strings(_ key: String) throws(TransportError) -> [String]? {
            guard let value = fields[key] else { return nil }
            guard let list = value as? [String] else { throw malformed("\(key) must be a list of strings") }
            return list
        }
        func version(_ key: String, _ choices: [String: SecurityParameters.ProtocolVersion]) throws(TransportError) -> SecurityParameters.ProtocolVersion? {
            guard let value = fields[key] else { return nil }
            guard let text = value as? String, let version = choices[text] else {
                throw malformed("\(key) must be one of \(choices.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", "))")
            }
            return version
        }
        func interfaces(_ key: String) throws(TransportError) -> SecurityInterface {
            var set: SecurityInterface = []
            for name in try strings(key) ?? [] {
                guard let interface = SecurityInterface(shortName: name) else {
                    throw malformed("\(key): unknown interface \"\(name)\" (RFC 8922 names: \(SecurityInterface.all.map(\.1).joined(separator: ", ")))")
                }
                set.insert(interface)
            }
            return set
        }
        let known = Set(StackRegistry.standard.stacks.map(\.name))
        for name in try strings("prohibitStacks") ?? [] {
            guard known.contains(name) else { throw malformed("prohibitStacks: unknown stack \"\(name)\"") }
            prohibitedStacks.insert(name)
        }
        minimumTLSVersion = try version("minimumTLSVersion", ["1.2": .tls12, "1.3": .tls13])
        minimumDTLSVersion = try version("minimumDTLSVersion", ["1.2": .dtls12, "1.3": .dtls13])
        cipherSuites = try strings("cipherSuites")
        for name in cipherSuites ?? [] where name.hasPrefix("TLS_") && !Self.tls13SuiteNames.contains(name) {
            throw malformed("cipherSuites: unknown TLS 1.3 suite \"\(name)\"")
        }
        if cipherSuites?.isEmpty == true { throw malformed("cipherSuites is empty; leave it out to allow every suite") }
        groups = try strings("groups")
        if groups?.isEmpty == true { throw malformed("groups is empty; leave it out to allow every group") }
        requiredInterfaces = try interfaces("requireInterfaces")
        prohibitedInterfaces = try interfaces("prohibitInterfaces")
        if !requiredInterfaces.intersection(prohibitedInterfaces).isEmpty {
            throw malformed("\(requiredInterfaces.intersection(prohibitedInterfaces)) both required and prohibited")
        }
    }

    // MARK: Applying it

    private var tls13Suites: [String]? { cipherSuites?.filter { $0.hasPrefix("TLS_") } }
    private var tls12Ciphers: [String]? { cipherSuites?.filter { !$0.hasPrefix("TLS_") } }

    /// The application's parameters narrowed by the policy: the versions it allows, and the
    /// intersection of the two algorithm lists (the application's order kept). A version whose
    /// suites the two do not share is dropped.
    func constrain(_ security: SecurityParameters) -> SecurityParameters {
        var constrained = security
        func narrow(_ own: [String], _ allowed: [String]?) -> [String] {
            guard let allowed else { return own }
            return own.isEmpty ? allowed : own.filter(allowed.contains)
        }
        let algorithms = security.algorithms
        constrained.algorithms.tls13CipherSuites = narrow(algorithms.tls13CipherSuites, tls13Suites)
        constrained.algorithms.tls12Ciphers = narrow(algorithms.tls12Ciphers, tls12Ciphers)
        constrained.algorithms.groups = narrow(algorithms.groups, groups)
        constrained.allowedVersions = security.allowedVersions.filter { version in
            switch version {
            case .tls12: minimumTLSVersion ?? .tls12 <= .tls12 && (tls12Ciphers == nil || !constrained.algorithms.tls12Ciphers.isEmpty)
            case .tls13: tls13Suites == nil || !constrained.algorithms.tls13CipherSuites.isEmpty
            case .dtls12: minimumDTLSVersion ?? .dtls12 <= .dtls12 && (tls12Ciphers == nil || !constrained.algorithms.tls12Ciphers.isEmpty)
            case .dtls13: true  // the DTLS chunk's suites are checked as a stack (`chunkSuiteConflict`)
            }
        }
        return constrained
    }

    /// Whether the application and the policy share no key-exchange group.
    func excludesEveryGroup(of security: SecurityParameters) -> Bool {
        guard let groups, !security.algorithms.groups.isEmpty else { return false }
        return security.algorithms.groups.allSatisfy { !groups.contains($0) }
    }

    /// The DTLS chunk's record protection is one of three AEAD suites, and BoringSSL's DTLS 1.3
    /// cannot be told which: under a suite list, the chunk qualifies only if it allows all three.
    var chunkSuiteConflict: String? {
        guard let suites = tls13Suites else { return nil }
        let needed = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
        let missing = needed.filter { !suites.contains($0) }
        guard !missing.isEmpty else { return nil }
        return "the DTLS chunk may use \(needed.joined(separator: ", ")); \(source) does not allow \(missing.joined(separator: ", "))"
    }
}
