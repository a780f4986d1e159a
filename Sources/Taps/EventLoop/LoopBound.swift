/// A weak reference to a loop-confined object, carried through `EventLoop.execute`. @unchecked
/// Sendable: made on the loop and dereferenced only there.
struct LoopBound<Value: AnyObject>: @unchecked Sendable {
    weak var value: Value?
    init(_ value: Value) { self.value = value }
}

/// A value (a closure, say) carried through `EventLoop.execute` back to the loop it was made on.
/// @unchecked Sendable: made on the loop thread and opened only there.
struct LoopConfined<Value>: @unchecked Sendable {
    let value: Value
}
