/// The receiver's sliding anti-replay window of one epoch (RFC 9147 section 4.5.1, as RFC 6347
/// section 4.1.2.6 describes it): the highest sequence number accepted, and which of the `size`
/// numbers below it were. A number is accepted only after its record authenticated.
struct ReplayWindow: Sendable {
    /// Largest window a configuration may ask for: beyond half the 16-bit number space on the wire,
    /// sequence-number reconstruction could not tell old from new anyway.
    static let maximumSize = 1 << 15

    let size: Int
    /// The highest accepted sequence number; nil before the first record.
    private(set) var highest: UInt64?
    /// Bit i of the map says whether `highest - i` was accepted (bit 0 is `highest` itself).
    private var seen: [UInt64]

    init(size: Int = 64) {
        precondition((1...Self.maximumSize).contains(size))
        self.size = size
        seen = Array(repeating: 0, count: (size + 63) / 64)
    }

    /// The sequence number a record is expected to carry next (RFC 9147 section 4.2.2 reconstructs
    /// the full number as the one closest to this).
    var expected: UInt64 { highest.map { $0 &+ 1 } ?? 0 }

    /// Whether a record with this number may still be accepted: newer than the highest, or inside
    /// the window and not seen.
    func isFresh(_ sequence: UInt64) -> Bool {
        guard let highest else { return true }
        if sequence > highest { return true }
        let age = highest - sequence
        guard age < UInt64(size) else { return false }
        return !bit(Int(age))
    }

    mutating func accept(_ sequence: UInt64) {
        guard let current = highest else {
            highest = sequence
            setBit(0)
            return
        }
        if sequence > current {
            shift(by: sequence - current)
            highest = sequence
            setBit(0)
        } else {
            let age = current - sequence
            if age < UInt64(size) { setBit(Int(age)) }
        }
    }

    private func bit(_ index: Int) -> Bool { seen[index / 64] & (1 << UInt64(index % 64)) != 0 }
    private mutating func setBit(_ index: Int) { seen[index / 64] |= 1 << UInt64(index % 64) }

    /// Ages every entry by `distance`: bit i moves to bit i + distance; bits past the window fall off.
    private mutating func shift(by distance: UInt64) {
        guard distance < UInt64(size) else {
            for index in seen.indices { seen[index] = 0 }
            return
        }
        let words = Int(distance / 64), bits = UInt64(distance % 64)
        for index in stride(from: seen.count - 1, through: 0, by: -1) {
            let source = index - words
            var value: UInt64 = source >= 0 ? seen[source] << bits : 0
            if bits > 0, source - 1 >= 0 { value |= seen[source - 1] >> (64 - bits) }
            seen[index] = value
        }
        // Bits beyond `size` in the last word are never read as ages below size; clear them anyway.
        let spare = seen.count * 64 - size
        if spare > 0 { seen[seen.count - 1] &= UInt64.max >> UInt64(spare) }
    }
}
