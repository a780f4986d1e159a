/// The arguments of an SSKE export, which every security protocol here checks alike: a label, and
/// at most 16 KB (RFC 5705 section 4; RFC 8446 section 7.5).
enum KeyingMaterialExport {
    static func validate(label: String, length: Int) throws(TransportError) {
        guard (1...16_384).contains(length) else { throw .invalidArgument("export length must be 1 to 16384 bytes, got \(length)") }
        guard !label.isEmpty else { throw .invalidArgument("the exporter label must not be empty") }
    }
}
