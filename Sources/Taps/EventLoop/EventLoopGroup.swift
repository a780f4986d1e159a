import Glibc
import Synchronization

/// A fixed set of event loops; new connections are spread over them round-robin.
///
/// `EventLoopGroup.shared` is started on first use with one loop per core, for applications that do
/// not want to manage loops; anything can instead pass its own group or loop to a `Preconnection`.
public final class EventLoopGroup: Sendable {
    /// The group's loops; `next()` hands them out in turn.
    public let loops: [EventLoop]
    private let nextIndex = Atomic<Int>(0)

    /// Starts `loopCount` loops (one per core by default), named `name-0`, `name-1`, ...
    public init(loopCount: Int = System.coreCount, name: String = "taps-loop") {
        precondition(loopCount > 0)
        loops = (0..<loopCount).map { EventLoop(name: "\(name)-\($0)") }
    }

    /// A group of one existing loop.
    public init(loop: EventLoop) {
        loops = [loop]
    }

    /// The next loop in round-robin order.
    public func next() -> EventLoop {
        let index = nextIndex.add(1, ordering: .relaxed).oldValue
        return loops[index % loops.count]
    }

    /// Shuts every loop down; returns the number of handles that were still open across them.
    @discardableResult
    public func shutdown() -> Int {
        loops.reduce(0) { $0 + $1.shutdown() }
    }

    /// The process-wide group, one loop per core, started on first use.
    public static let shared = EventLoopGroup(name: "taps-shared")
}

/// Facts about the host.
public enum System {
    /// The number of online CPUs (at least 1).
    public static var coreCount: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}
