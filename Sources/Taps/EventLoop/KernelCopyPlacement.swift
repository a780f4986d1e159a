/// Where a buffer the kernel copies socket data into should not start.
///
/// Linux copies between user memory and socket buffers with `rep movsb`. On this machine's AMD
/// EPYC (Zen 3) cores that copy runs at a sixth to a tenth of its speed when the destination sits
/// 1-31 bytes past the source's offset within a 4 KB page: 1.8-2.6 against 20-26 GB/s for a 64 KB
/// `pread` or `pwrite` (Benchmarks/CopyProbe, Docs/Benchmarks.md).
///
/// A sender that writes whole pages (64 KB messages, say) keeps the kernel's page fragments at one
/// offset from the byte stream, most often offset 0 (the kernel restarts a fragment page at 0 once
/// nothing else holds it). Every read of the stream then copies at the same relative offset, so a
/// read buffer that starts badly stays slow for the whole connection: plain TCP ran at ~1.1 GB/s
/// instead of ~3 GB/s with a receive buffer 16 bytes into a page.
enum KernelCopyPlacement {
    static let pageSize = 4096
    /// Distances (destination minus source, within a page) from 1 up to this copy slowly.
    static let slowDistanceLimit = 32

    /// Whether copying stream bytes into `destination` would be slow, if the stream byte that
    /// lands there sits `sourcePageOffset` bytes into the kernel's page.
    static func isSlow(destination: UnsafeRawPointer, sourcePageOffset: Int) -> Bool {
        let distance = (Int(bitPattern: destination) &- sourcePageOffset) & (pageSize - 1)
        return distance > 0 && distance < slowDistanceLimit
    }
}

/// Makes the arrays plain TCP reads into, so that none starts where the kernel's copy into it is
/// slow for a sender writing whole pages (`KernelCopyPlacement`). A reader that keeps up frees each
/// array before the next is made, so the allocator hands back the same block every time: when that
/// block is badly placed, it is parked (held, empty) for the socket's lifetime and the allocator
/// hands out another. At most `parkLimit` blocks are parked per socket. Loop thread only.
struct ReadArrayMaker {
    static let parkLimit = 2
    private(set) var parked: [[UInt8]] = []
    /// How many bytes of the stream came before the next one a read writes (modulo the page size
    /// or not): where those bytes sit in the kernel's pages for a sender writing whole pages.
    /// Moved on by `makeArray`; set directly only by tests.
    var streamOffset: Int

    init(streamOffset: Int = 0) {
        self.streamOffset = streamOffset
    }

    /// A new array of up to `capacity` bytes, filled by `fill` (which returns how many bytes it
    /// wrote, or a negative number for none); the stream offset moves on by what it wrote.
    mutating func makeArray(capacity: Int, fill: (UnsafeMutableBufferPointer<UInt8>) -> Int) -> [UInt8] {
        let sourcePageOffset = streamOffset & (KernelCopyPlacement.pageSize - 1)
        while true {
            let mayPark = parked.count < Self.parkLimit
            var placedBadly = false
            let array = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                if mayPark, let base = buffer.baseAddress,
                   KernelCopyPlacement.isSlow(destination: base, sourcePageOffset: sourcePageOffset) {
                    placedBadly = true
                    count = 0
                    return
                }
                count = max(fill(buffer), 0)
            }
            guard placedBadly else {
                streamOffset &+= array.count
                return array
            }
            parked.append(array)  // keeps the block, so the next allocation lands elsewhere
        }
    }

    mutating func releaseParked() { parked.removeAll() }
}
