/// A weak reference to a loop-confined object, carried through `EventLoop.execute`. @unchecked
/// Sendable: made on the loop and dereferenced only there.
struct LoopBound<Value: AnyObject>: @unchecked Sendable {
    weak var value: Value?
    init(_ value: Value) { self.value = value }
}
