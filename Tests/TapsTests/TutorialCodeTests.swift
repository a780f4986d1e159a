import Foundation
import XCTest

/// The DocC tutorial's code (Sources/Taps/Taps.docc/Resources/room-chat-NN.swift) cannot rot: every
/// step type-checks against the Taps module as built for these tests, the last step is the
/// room-chat example, and that example runs to the end on loopback.
final class TutorialCodeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let resources = root.appendingPathComponent("Sources/Taps/Taps.docc/Resources")

    static func steps() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: resources.path)
            .filter { $0.hasPrefix("room-chat-") && $0.hasSuffix(".swift") }.sorted()
            .map { resources.appendingPathComponent($0) }
    }

    func testTheLastStepIsTheRoomChatExample() throws {
        let last = try XCTUnwrap(Self.steps().last)
        let example = Self.root.appendingPathComponent("Examples/room-chat/main.swift")
        XCTAssertEqual(try String(contentsOf: last, encoding: .utf8), try String(contentsOf: example, encoding: .utf8),
                       "\(last.lastPathComponent) and Examples/room-chat/main.swift differ")
    }

    func testEveryStepTypeChecks() async throws {
        let steps = try Self.steps()
        XCTAssertEqual(steps.count, 8, "the tutorial's steps")
        // The test bundle sits beside the modules it was built with; Taps' C modules must be
        // findable too, because a testable build loads even internally imported modules.
        let products = URL(fileURLWithPath: ChildProcess.product("Modules")).deletingLastPathComponent()
        let sources = Self.root.appendingPathComponent("Sources")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tutorial-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        for step in steps {
            // Named main.swift, so its top-level code is the program's.
            let main = scratch.appendingPathComponent("main.swift")
            try? FileManager.default.removeItem(at: main)
            try FileManager.default.copyItem(at: step, to: main)
            let compiler = try ChildProcess("/usr/bin/env", [
                "swiftc", "-typecheck", "-swift-version", "6", main.path,
                "-I", products.appendingPathComponent("Modules").path,
                "-I", sources.appendingPathComponent("CLibUV").path,
                "-I", sources.appendingPathComponent("COpenSSL").path,
                "-I", sources.appendingPathComponent("CUsrSCTP").path,
                "-I", sources.appendingPathComponent("CTapsShims/include").path,
                "-Xcc", "-fmodule-map-file=" + products.appendingPathComponent("CTapsShims.build/module.modulemap").path,
            ])
            let status = await compiler.finish(timeout: 120)
            XCTAssertEqual(status, 0, "\(step.lastPathComponent) does not type-check:\n\(compiler.text)")
        }
    }

    func testTheFinishedChatRunsOverTheDTLSChunk() async throws {
        let chat = try ChildProcess(ChildProcess.product("taps-room-chat"), [])
        let status = await chat.finish(timeout: 60)
        let output = chat.text
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("server: listening on 127.0.0.1:"), output)
        XCTAssertTrue(output.contains("with dtls-chunk-sctp"), output)
        // Every member reads every member's hello in every room, each on its room's stream.
        for reader in ["alice", "bob"] {
            XCTAssertTrue(output.contains("\(reader): dtls-chunk-sctp, 2 streams, DTLSv1.3"), output)
            for room in ["general", "build"] {
                XCTAssertTrue(output.contains("\(reader): welcome to \(room), \(reader)"), output)
                for writer in ["alice", "bob"] {
                    XCTAssertTrue(output.contains("\(reader) reads \(writer)@\(room): hello \(room), \(writer) here"), output)
                }
            }
        }
        XCTAssertTrue(output.hasSuffix("done\n"), output)
    }
}
