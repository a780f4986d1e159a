/// The RFC 8922 capability table of a registry: which security interfaces each security protocol
/// exposes in this implementation, beside what the survey's Table 1 says the protocol can expose.
/// Docs/Security.md holds its output, and a test keeps the two equal.
public enum SecurityCapabilityTable {
    /// RFC 8922 section 5.4, Table 1, for the protocols this SDK builds stacks from.
    public static let surveyTable1: [String: SecurityInterface] = [
        "TLS": [.identitiesAndPrivateKeys, .algorithms, .extensions, .sessionCache, .preSharedKeyImport, .identityValidation,
                .connectionTermination, .keyUpdate, .sharedSecretKeyExport],
        "DTLS": [.identitiesAndPrivateKeys, .algorithms, .extensions, .sessionCache, .preSharedKeyImport, .identityValidation,
                 .sourceAddressValidation, .connectionTermination, .keyUpdate, .sharedSecretKeyExport, .mobilityEvents],
    ]

    /// One line per interface, two columns per security protocol (here / RFC 8922), as Markdown.
    public static func markdown(_ registry: StackRegistry = .standard) -> String {
        var protocols: [SecurityProtocol] = []
        for stack in registry.stacks {
            if let security = stack.security, !protocols.contains(where: { $0.name == security.name }) { protocols.append(security) }
        }
        var lines = ["| interface | " + protocols.map { "\($0.name) here | \($0.name) in RFC 8922" }.joined(separator: " | ") + " |"]
        lines.append("| --- |" + String(repeating: " --- | --- |", count: protocols.count))
        for (interface, short) in SecurityInterface.all {
            let cells = protocols.map { security in
                let ours = security.interfaces.contains(interface) ? "x" : " "
                let survey = surveyTable1[security.name].map { $0.contains(interface) ? "x" : " " } ?? "?"
                return "\(ours) | \(survey)"
            }
            lines.append("| \(short) (\(interface.title)) | " + cells.joined(separator: " | ") + " |")
        }
        let usedBy = protocols.map { security in
            "\(security.name) in " + registry.stacks.filter { $0.security?.name == security.name }.map(\.name).joined(separator: ", ")
        }
        lines.append("")
        lines.append("Stacks: " + usedBy.joined(separator: "; ") + ".")
        return lines.joined(separator: "\n") + "\n"
    }
}

extension SecurityInterface {
    /// RFC 8922's name for a single interface.
    var title: String {
        let titles: [SecurityInterface: String] = [
            .identitiesAndPrivateKeys: "identities and private keys", .algorithms: "algorithms", .extensions: "extensions",
            .sessionCache: "session cache management", .authenticationDelegation: "authentication delegation",
            .preSharedKeyImport: "pre-shared key import", .identityValidation: "identity validation",
            .sourceAddressValidation: "source address validation", .connectionTermination: "connection termination",
            .keyUpdate: "key update", .sharedSecretKeyExport: "shared secret export", .keyExpiration: "key expiration",
            .mobilityEvents: "mobility events",
        ]
        return titles[self] ?? description
    }
}
