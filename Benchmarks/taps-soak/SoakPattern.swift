/// The bytes a soak sends: a function of their offset in the transfer (a SplitMix64 finaliser of
/// each 8-byte block's index, with the seed), so the receiver checks every byte, its place
/// included, without keeping a copy: a lost, repeated, reordered or altered piece shows.
struct SoakPattern {
    let seed: UInt64

    private func block(_ index: UInt64) -> UInt64 {
        var z = index &+ seed &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` bytes from `offset` on.
    func bytes(at offset: Int, count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            for index in 0..<count { buffer[index] = byte(at: offset + index) }
            initialized = count
        }
    }

    @inline(__always)
    func byte(at offset: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: block(UInt64(offset >> 3)) >> (UInt64(offset & 7) << 3))
    }

    /// How many of `bytes` differ from the pattern at `offset`.
    func mismatches(in bytes: some Collection<UInt8>, at offset: Int) -> Int {
        var count = 0, position = offset
        for byte in bytes {
            if byte != self.byte(at: position) { count += 1 }
            position += 1
        }
        return count
    }
}
