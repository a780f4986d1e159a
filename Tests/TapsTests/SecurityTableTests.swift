import Foundation
import XCTest
@testable import Taps

/// Docs/Security.md's capability table must be the one the registry generates.
final class SecurityTableTests: XCTestCase {
    func testDocumentedCapabilityTableIsGeneratedFromTheRegistry() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Docs/Security.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let generated = SecurityCapabilityTable.markdown()
        XCTAssertTrue(text.contains("<!-- capability-table -->\n" + generated + "<!-- /capability-table -->"),
                      "Docs/Security.md is out of date; regenerate with `swift run taps-demo --capability-table`:\n\(generated)")
    }

    func testEveryRFC8922InterfaceHasANameAndTheSurveyRowsDifferOnlyWhereExplained() {
        XCTAssertEqual(SecurityInterface.all.count, 13)
        XCTAssertEqual(Set(SecurityInterface.all.map(\.1)).count, 13)
        // Interfaces the survey lists for a protocol and we do not expose are the documented ones.
        let missing = StackRegistry.standard.stacks.compactMap(\.security).map { security in
            "\(security.name): " + SecurityCapabilityTable.surveyTable1[security.name, default: []].subtracting(security.interfaces).description
        }
        XCTAssertEqual(Set(missing), ["TLS: none", "DTLS: KU,ME", "DTLS chunk: none"], "the survey has no row for the DTLS chunk")
    }
}
