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
