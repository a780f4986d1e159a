/// One stack's verdict in candidate selection (RFC 9623 section 4.1): whether it qualifies, its rank
/// among those that do, and the reasons.
public struct CandidateReport: Sendable, CustomStringConvertible {
    /// The stack judged.
    public let stack: ProtocolStack
    /// Whether the stack meets every requirement and prohibition.
    public let qualifies: Bool
    /// Position among qualifying stacks (0 is tried first); nil when the stack does not qualify.
    public internal(set) var rank: Int?
    /// Why the stack was ruled out, or which preferences it met or missed.
    public let reasons: [String]
    let preferMatches: Int
    let avoidMatches: Int

    public var description: String {
        let verdict = qualifies ? "rank \(rank ?? 0)" : "ruled out"
        return "\(stack.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(verdict.padding(toLength: 10, withPad: " ", startingAt: 0)) \(reasons.joined(separator: "; "))"
    }
}

extension Array where Element == CandidateReport {
    /// The reports as a table, one stack per line.
    public var table: String { map(\.description).joined(separator: "\n") }
}

/// Filters the registry by require / prohibit and ranks by prefer / avoid (RFC 9623 section 4.1),
/// explaining each decision.
struct StackSelector {
    let properties: TransportProperties
    /// The application's parameters, narrowed by the system policy.
    let security: SecurityParameters
    let hasFramer: Bool
    let role: ProtocolStack.Role
    /// The host's policy (nil: none), applied before the application's preferences; a malformed
    /// one rules every stack out.
    let policy: Result<SystemPolicy?, TransportError>
    /// The policy when it is well formed.
    private let rules: SystemPolicy?
    /// What the application asked for, before the policy narrowed it (to tell whose rule it was).
    private let requested: SecurityParameters

    init(properties: TransportProperties, security: SecurityParameters, hasFramer: Bool, role: ProtocolStack.Role,
         policy: Result<SystemPolicy?, TransportError> = .success(nil)) {
        self.properties = properties
        requested = security
        rules = (try? policy.get()) ?? nil
        self.security = rules?.constrain(security) ?? security
        self.hasFramer = hasFramer
        self.role = role
        self.policy = policy
    }

    func evaluate(_ registry: StackRegistry) -> [CandidateReport] {
        var reports = registry.stacks.map(evaluate)
        // Stable ranking: more preferences met first, fewer avoided properties next, registry order last.
        let ranked = reports.indices.filter { reports[$0].qualifies }.sorted { a, b in
            let (x, y) = (reports[a], reports[b])
            if x.preferMatches != y.preferMatches { return x.preferMatches > y.preferMatches }
            if x.avoidMatches != y.avoidMatches { return x.avoidMatches < y.avoidMatches }
            return a < b
        }
        for (rank, index) in ranked.enumerated() { reports[index].rank = rank }
        return reports
    }

    /// The qualifying stacks in rank order, or an error naming what no stack met.
    func select(_ registry: StackRegistry) throws(TransportError) -> [ProtocolStack] {
        let reports = evaluate(registry)
        let chosen = reports.filter(\.qualifies).sorted { $0.rank! < $1.rank! }.map(\.stack)
        guard chosen.isEmpty else { return chosen }
        let why = reports.map { "\($0.stack.name): \($0.reasons.first ?? "ruled out")" }.joined(separator: "; ")
        throw .noCandidate("no protocol stack satisfies the requirements (\(why))")
    }

    func features(of stack: ProtocolStack) -> TransportFeatures {
        // A framer on a byte stream gives it message boundaries (RFC 9622 section 9.1.2).
        hasFramer && stack.isByteStream ? stack.features.union(.messageBoundaries) : stack.features
    }

    private func evaluate(_ stack: ProtocolStack) -> CandidateReport {
        var unmet: [String] = []
        var notes: [String] = []
        var preferMatches = 0
        var avoidMatches = 0

        if !stack.roles.contains(role) { unmet.append("cannot \(role.rawValue)") }
        switch policy {
        case .failure(let error):
            unmet.append("\(error)")
        case .success(let policy?) where policy.prohibitedStacks.contains(stack.name):
            unmet.append("prohibited by \(policy.source)")
        default: break
        }

        let features = features(of: stack)
        for (name, preference, feature) in properties.featurePreferences {
            let has = features.contains(feature)
            switch (preference, has) {
            case (.require, false): unmet.append("\(name) required, not provided" + (stack.restriction(on: feature).map { " (\($0))" } ?? ""))
            case (.prohibit, true): unmet.append("\(name) prohibited, provided")
            case (.prefer, true): preferMatches += 1; notes.append("\(name) preferred, provided")
            case (.prefer, false): notes.append("\(name) preferred, not provided")
            case (.avoid, true): avoidMatches += 1; notes.append("\(name) avoided, provided")
            default: break
            }
        }
        if properties.multipath != .disabled && !features.contains(.multipath) {
            unmet.append("multipath \(properties.multipath) requested, not provided")
        }
        for (name, preference) in properties.interface.merging(properties.pvd, uniquingKeysWith: { a, _ in a })
        where preference == .require {
            unmet.append("interface/pvd \(name) required; binding to interfaces is not implemented")
        }

        unmet += securityMismatches(stack, preferMatches: &preferMatches, avoidMatches: &avoidMatches, notes: &notes)

        let qualifies = unmet.isEmpty
        return CandidateReport(stack: stack, qualifies: qualifies, rank: nil,
                               reasons: qualifies ? (notes.isEmpty ? ["meets every requirement"] : notes) : unmet,
                               preferMatches: preferMatches, avoidMatches: avoidMatches)
    }

    private func securityMismatches(_ stack: ProtocolStack, preferMatches: inout Int, avoidMatches: inout Int,
                                    notes: inout [String]) -> [String] {
        let policy = rules
        guard security.isEnabled else {
            if let policy, !policy.requiredInterfaces.isEmpty {
                return ["\(policy.source) requires \(policy.requiredInterfaces); security is disabled"]
            }
            return stack.security.map { ["security disabled, stack adds \($0.name)"] } ?? []
        }
        guard let protocolInfo = stack.security else {
            return ["security required (use SecurityParameters.disabled for a plain transport)"]
        }
        var unmet: [String] = []
        if protocolInfo.versions.isDisjoint(with: security.allowedVersions) {
            let byPolicy = !protocolInfo.versions.isDisjoint(with: requested.allowedVersions)
            unmet.append("\(protocolInfo.name) versions \(protocolInfo.versions.map(\.rawValue).sorted()) not allowed"
                         + (byPolicy ? " by \(policy?.source ?? "the system policy") (its minimum versions and cipher suites)" : ""))
        }
        if let policy {
            if policy.excludesEveryGroup(of: requested) {
                unmet.append("no key-exchange group both the application (\(requested.algorithms.groups.joined(separator: ", "))) and \(policy.source) allow")
            }
            if protocolInfo.name == SecurityProtocol.dtlsChunk.name, let conflict = policy.chunkSuiteConflict { unmet.append(conflict) }
        }
        if protocolInfo.name == SecurityProtocol.dtlsChunk.name {
            let methods = DTLSChunkSettings.offeredMethods(security)
            if let unconfigured = DTLSChunkSettings.unconfiguredChoice(security) {
                unmet.append(unconfigured)
            } else if methods.isEmpty {
                unmet.append("the DTLS chunk needs key management: an identity and trustedRoots .pem (DTLS 1.3, mutual authentication), or SecurityParameters.dtlsChunkKeys (KMId 0)")
            } else {
                notes.append("DTLS chunk key management offered: \(methods.map(\.description).joined(separator: ", "))")
            }
            // Rekeying, trust decisions and key export need a handshake method (DTLS 1.3 or TLS
            // 1.3): pre-shared parameters authenticate no certificate and have no exporter.
            if !methods.contains(where: { $0 == security.dtlsChunkDTLS13KeyManagementID || $0 == .tls13 }) {
                let needsHandshake: [(SecurityInterface, String, String)] = [
                    (.keyUpdate, "KU", "rekeys"), (.identityValidation, "IV", "validates a peer's certificate"),
                    (.sharedSecretKeyExport, "SSKE", "exports keying material"), (.sessionCache, "CM", "resumes sessions"),
                ]
                for (interface, short, what) in needsHandshake
                where security.interfacePreferences[interface] == .require || (interface == .identityValidation && security.trustVerifier != nil) {
                    unmet.append("\(short) required: the DTLS chunk \(what) only with DTLS 1.3 or TLS 1.3 key management (an identity and trustedRoots .pem), not with pre-shared parameters")
                }
            }
        }
        let implied = security.configuredInterfaces
        for (interface, short) in SecurityInterface.all {
            // The system policy comes first: what it requires or prohibits, the application cannot relax.
            if let policy, policy.requiredInterfaces.contains(interface) || policy.prohibitedInterfaces.contains(interface) {
                let has = protocolInfo.interfaces.contains(interface)
                let required = policy.requiredInterfaces.contains(interface)
                if required && !has { unmet.append("\(short) required by \(policy.source), \(protocolInfo.name) here does not expose it") }
                if !required && has { unmet.append("\(short) prohibited by \(policy.source), \(protocolInfo.name) exposes it") }
                if security.interfacePreferences[interface] == (required ? .prohibit : .require) {
                    unmet.append("\(short) \(required ? "prohibited" : "required") by the application, \(required ? "required" : "prohibited") by \(policy.source)")
                }
                continue
            }
            // A configured feature (a PSK, a callback) requires its interface unless the
            // application said otherwise for it.
            guard let preference = security.interfacePreferences[interface] ?? (implied.contains(interface) ? .require : nil) else { continue }
            let has = protocolInfo.interfaces.contains(interface)
            switch (preference, has) {
            case (.require, false): unmet.append("\(short) required, \(protocolInfo.name) here does not expose it")
            case (.prohibit, true): unmet.append("\(short) prohibited, \(protocolInfo.name) exposes it")
            case (.prefer, true): preferMatches += 1; notes.append("\(short) preferred, exposed")
            case (.avoid, true): avoidMatches += 1; notes.append("\(short) avoided, exposed")
            default: break
            }
        }
        return unmet
    }
}
