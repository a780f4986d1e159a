import Taps

// A chat with rooms over SCTP: each member's client opens one association to the server and one
// stream in it per room, so a busy room never holds up another (no head-of-line blocking between
// streams).
let rooms = ["general", "build"]
let members = ["alice", "bob"]

var transport = TransportProperties.reliableMessage  // reliable, ordered messages with boundaries
transport.multistreaming = .require                   // one association, a stream per connection

// No security yet: plain SCTP.
let security = SecurityParameters.disabled

/// Who is in which room: the server's end of each member's stream, by room name.
actor Rooms {
    private var streams: [String: [Connection]] = [:]

    func join(_ room: String, _ stream: Connection) { streams[room, default: []].append(stream) }

    func leave(_ room: String, _ stream: Connection) { streams[room]?.removeAll { $0 === stream } }

    /// Sends `text` to every member of `room`, the sender too.
    func broadcast(_ text: String, in room: String) async {
        for stream in streams[room] ?? [] { try? await stream.send(text) }
    }
}

let listener = try await Preconnection(local: .loopback(), transport: transport, security: security).listen()
print("server: listening on \(listener.localAddress) with \(listener.stack.name)")

// The server: every stream a client opens arrives as a connection. Its first message names the
// room and the member ("join general alice"); every later one goes to everyone in the room.
let chatRooms = Rooms()
let server = Task { [listener, chatRooms] in
    await withTaskGroup(of: Void.self) { group in
        for await stream in listener.connections {
            group.addTask {
                var joined: (room: String, member: String)?
                do {
                    for try await message in stream.messages where !message.content.isEmpty {
                        if let (room, member) = joined {
                            await chatRooms.broadcast("\(member)@\(room): \(message.text)", in: room)
                            continue
                        }
                        let words = message.text.split(separator: " ").map(String.init)
                        guard words.count == 3, words[0] == "join" else { break }
                        joined = (words[1], words[2])
                        await chatRooms.join(words[1], stream)
                        try await stream.send("welcome to \(words[1]), \(words[2])")
                    }
                } catch {
                    print("server: a stream failed: \(error)")
                }
                if let (room, _) = joined { await chatRooms.leave(room, stream) }
                await stream.close()
            }
        }
    }
}

/// A member's client: one association, one stream per room, each joined and welcomed.
@MainActor func connect(_ member: String) async throws -> [String: Connection] {
    let client = Preconnection(remote: .host("localhost", port: listener.localAddress.port),
                               transport: transport, security: security)
    let first = try await client.initiate()
    var streams = [rooms[0]: first]
    for room in rooms.dropFirst() { streams[room] = try await first.clone() }  // the next stream
    for (room, stream) in streams {
        try await stream.send("join \(room) \(member)")
        print("\(member): \(try await stream.receive().text)")
    }
    print("\(member): \(first.stack.name), \(first.group.count) streams")
    return streams
}
