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

let listener = try await Preconnection(local: .loopback(), transport: transport, security: security).listen()
print("server: listening on \(listener.localAddress) with \(listener.stack.name)")
