import XCTest
@testable import Taps

/// The order in which queued SCTP messages go: other streams by connPriority, a stream's own
/// messages only by msgPriority, key management before everything.
final class SCTPSendQueueTests: XCTestCase {
    private func message(_ byte: Character, stream: UInt16, streamPriority: Int, msgPriority: Int = 100) -> SCTPSendQueue.Entry {
        var properties = MessageProperties()
        properties.priority = msgPriority
        return .message(SCTPSendQueue.Message(streamID: stream, streamPriority: streamPriority,
                                              bytes: [byte.asciiValue!], properties: properties, completion: nil))
    }

    private func order(_ queue: SCTPSendQueue) -> String {
        String(queue.waiting.compactMap { $0.first.map { Character(UnicodeScalar($0)) } })
    }

    /// A stream made more important while its messages wait (a TLS stream's records, say) does not
    /// let its later messages pass its earlier ones; a more important message still does.
    func testAStreamsOwnMessagesKeepTheirOrderWhenItsPriorityChanges() {
        var queue = SCTPSendQueue()
        queue.enqueue(message("a", stream: 1, streamPriority: 100))
        queue.enqueue(message("b", stream: 1, streamPriority: 100))
        queue.enqueue(message("c", stream: 1, streamPriority: 1))
        XCTAssertEqual(order(queue), "abc")
        queue.enqueue(message("m", stream: 1, streamPriority: 1, msgPriority: 10))
        XCTAssertEqual(order(queue), "mabc", "msgPriority reorders within the stream")
        queue.enqueue(message("k", stream: 1, streamPriority: SCTPSendQueue.urgentPriority))
        XCTAssertEqual(order(queue), "kmabc", "key management goes first")
    }

    func testAMoreImportantStreamOvertakesAnothersMessages() {
        var queue = SCTPSendQueue()
        queue.enqueue(message("a", stream: 1, streamPriority: 100))
        queue.enqueue(message("b", stream: 1, streamPriority: 100))
        queue.enqueue(message("x", stream: 2, streamPriority: 50))
        queue.enqueue(message("y", stream: 3, streamPriority: 200))
        XCTAssertEqual(order(queue), "xaby")
    }
}
