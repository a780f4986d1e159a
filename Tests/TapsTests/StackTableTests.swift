import Foundation
import XCTest
@testable import Taps

/// Docs/Stacks.md's table must say what the registry says.
final class StackTableTests: XCTestCase {
    func testDocumentedTableMatchesTheRegistry() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Docs/Stacks.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        for stack in StackRegistry.standard.stacks {
            let security = stack.security.map { "\($0.name) (\($0.versions.map(\.rawValue).sorted().joined(separator: ", ")))" } ?? "none"
            let interfaces = stack.security?.interfaces.shortNames.joined(separator: ", ") ?? "-"
            let roles = [ProtocolStack.Role.initiate, .listen, .rendezvous].filter(stack.roles.contains).map(\.rawValue)
            let row = "| \(stack.name) | \(stack.layers.map(\.rawValue).joined(separator: ", ")) | "
                + "\(stack.features.names.joined(separator: ", ")) | \(security) | \(interfaces) | \(roles.joined(separator: ", ")) |"
            XCTAssertTrue(text.contains(row), "Docs/Stacks.md lacks or misstates:\n\(row)")
        }
    }

    /// Every registered stack composes: each layer stands on the service the one below gives.
    func testEveryStackStandsOnTheServicesItsLayersNeed() {
        for stack in StackRegistry.standard.stacks {
            for (below, above) in zip(stack.layers, stack.layers.dropFirst()) {
                XCTAssertTrue(above.canStand(on: below.service), "\(stack.name): \(above) cannot stand on \(below)")
            }
        }
        XCTAssertTrue(ProtocolStack.LayerKind.tls.canStand(on: .orderedMessages), "TLS runs on one SCTP stream (RFC 3436)")
        XCTAssertFalse(ProtocolStack.LayerKind.tls.canStand(on: .datagrams), "TLS needs reliable, ordered delivery")
        XCTAssertFalse(ProtocolStack.LayerKind.dtls.canStand(on: .orderedMessages))
        XCTAssertFalse(ProtocolStack.LayerKind.dtls.canStand(on: .byteStream))
    }
}
