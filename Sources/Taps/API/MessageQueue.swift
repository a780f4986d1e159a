/// Received messages waiting for `receive`, with the partial-message rules of RFC 9622 section
/// 9.3.1 (minIncompleteLength / maxLength).
struct MessageQueue {
    /// Handed-out slots before `head` keep no bytes: a message the application took (and dropped)
    /// must not stay referenced here, or its bytes live on until the next compaction and the
    /// allocator cannot hand their memory, still in cache, to the next receive.
    private var messages: [Message] = []
    private var head = 0
    private(set) var byteCount = 0

    var isEmpty: Bool { head == messages.count }

    mutating func append(_ message: Message) {
        messages.append(message)
        byteCount += message.content.count
    }

    /// The next message to hand out, or nil when the rules say to wait for more bytes.
    mutating func take(minIncompleteLength: Int, maxLength: Int, atEnd: Bool) -> Message? {
        guard !isEmpty else { return nil }
        var first = messages[head]
        if !first.isComplete {
            // Coalesce consecutive partial chunks up to maxLength.
            var index = head + 1
            while first.content.count < min(minIncompleteLength, maxLength), index < messages.count, !messages[index].isComplete {
                first.content += messages[index].content
                index += 1
            }
            if first.content.count < minIncompleteLength && !atEnd && index == messages.count { return nil }
            if index > head + 1 { messages.replaceSubrange(head..<index, with: CollectionOfOne(first)) }
        }
        if first.content.count > maxLength {
            // Hand out the front; the rest stays queued as the next part.
            var rest = first
            rest.content = Array(first.content[maxLength...])
            rest.isPart = true
            first.content = Array(first.content[..<maxLength])
            first.isComplete = false
            first.isPart = true
            first.context.properties.final = false
            messages[head] = rest
        } else {
            messages[head].content = []
            head += 1
        }
        byteCount -= first.content.count
        if head > 64 && head * 2 > messages.count {
            messages.removeFirst(head)
            head = 0
        }
        return first
    }
}
