import Foundation
import XCTest

/// The C modules stay out of `Taps`'s public interface: every file imports them `internal` (an
/// unqualified import is public and would make them part of the interface), so a public declaration
/// that names a C type does not compile.
final class PublicInterfaceTests: XCTestCase {
    static let cModules = ["COpenSSL", "CLibUV", "CUsrSCTP", "CTapsShims", "CNIOBoringSSL"]

    func testCModulesAreImportedInternallyOnly() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let files = try XCTUnwrap(FileManager.default.enumerator(atPath: sources.path)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") && ($0.hasPrefix("Taps/") || $0.hasPrefix("TapsDTLS13/")) }
        XCTAssertGreaterThan(files.count, 50)
        var internalImports = 0
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") where line.contains("import ") {
                let words = line.split(separator: " ")
                guard let module = words.last, Self.cModules.contains(String(module)) else { continue }
                let qualifier = words.dropLast(2).joined(separator: " ")
                XCTAssertTrue(qualifier == "internal" || qualifier == "@_implementationOnly", "\(file): \(line)")
                internalImports += 1
            }
        }
        XCTAssertGreaterThan(internalImports, 30, "the C modules' imports were found")
    }
}
