import XCTest
@testable import Taps

final class MessageQueueTests: XCTestCase {
    /// A message handed out is no longer referenced by the queue: its bytes are the application's
    /// alone (changing them copies nothing), and dropping it frees them at once.
    func testTakenMessagesAreNotKeptAlive() throws {
        var queue = MessageQueue()
        for index in 0..<3 { queue.append(Message([UInt8](repeating: UInt8(index), count: 4096))) }
        for index in 0..<3 {
            var taken = try XCTUnwrap(queue.take(minIncompleteLength: 1, maxLength: .max, atEnd: false))
            let before = taken.content.withUnsafeBufferPointer { $0.baseAddress }
            taken.content[0] = 0xFF  // copy-on-write would move the bytes if the queue still held them
            let after = taken.content.withUnsafeBufferPointer { $0.baseAddress }
            XCTAssertEqual(before, after, "message \(index) is still referenced by the queue")
        }
        XCTAssertTrue(queue.isEmpty)
        XCTAssertEqual(queue.byteCount, 0)
    }
}
