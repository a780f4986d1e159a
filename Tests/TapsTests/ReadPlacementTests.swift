import Glibc
import XCTest
@testable import Taps

/// Plain TCP reads into arrays that never start where the kernel's copy into them is slow
/// (`KernelCopyPlacement`, `ReadArrayMaker`).
final class ReadPlacementTests: XCTestCase {
    func testSlowDistancesAreOneToThirtyOneBytesPastTheSourceWithinAPage() {
        func slow(_ destination: Int, _ source: Int) -> Bool {
            KernelCopyPlacement.isSlow(destination: UnsafeRawPointer(bitPattern: destination)!, sourcePageOffset: source)
        }
        XCTAssertFalse(slow(0x10000, 0), "same offset")
        XCTAssertTrue(slow(0x10001, 0))
        XCTAssertTrue(slow(0x10010, 0), "16 bytes into a page, the source at 0")
        XCTAssertTrue(slow(0x1001F, 0))
        XCTAssertFalse(slow(0x10020, 0), "32 bytes past copies at full speed")
        XCTAssertFalse(slow(0x10800, 0), "half a page")
        XCTAssertFalse(slow(0x10FF0, 0), "destination before the source")
        XCTAssertTrue(slow(0x10005, 4090), "the distance wraps around the page")
        XCTAssertFalse(slow(0x10010, 16 + 4096 * 3), "the stream offset counts modulo the page")
    }

    /// The allocator hands a freed block straight back; with the stream at an offset that makes
    /// that block slow to copy into, the maker parks it and reads into another, and the bytes read
    /// from a real socket arrive intact.
    func testABadlyPlacedBlockIsParkedAndTheReadLandsElsewhere() throws {
        let capacity = 64 * 1024
        let (reader, writer) = try socketPair()
        defer { close(reader); close(writer) }
        let sent = (0..<capacity).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        XCTAssertEqual(sent.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }, capacity)
        var received: [UInt8] = []
        received.reserveCapacity(capacity)

        let probe = [UInt8](unsafeUninitializedCapacity: capacity) { _, count in count = 0 }
        let blockAddress = probe.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) }
        _ = consume probe
        // The stream offset that puts this block's first byte 16 bytes past its source.
        let streamOffset = (blockAddress - 16) & (KernelCopyPlacement.pageSize - 1)
        var maker = ReadArrayMaker(streamOffset: streamOffset)
        while received.count < capacity {
            let array = maker.makeArray(capacity: capacity) { buffer in
                read(reader, buffer.baseAddress, buffer.count)
            }
            let base = try XCTUnwrap(array.withUnsafeBufferPointer { $0.baseAddress })
            XCTAssertFalse(KernelCopyPlacement.isSlow(destination: base, sourcePageOffset: streamOffset + received.count))
            XCTAssertFalse(array.isEmpty)
            received += array
        }
        XCTAssertEqual(received, sent)
        XCTAssertEqual(maker.streamOffset, streamOffset + capacity, "the offset moved on by the bytes read, not by the parked block")
        XCTAssertEqual(maker.parked.count, 1, "the block the allocator offered first was parked")
        XCTAssertGreaterThanOrEqual(maker.parked.first?.capacity ?? 0, capacity, "a parked array holds its block")
        XCTAssertEqual(maker.parked.first?.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) }, blockAddress)
    }

    /// With `parkLimit` blocks parked, a read goes ahead wherever the allocator puts it: the maker
    /// never loops without bound and never drops bytes.
    func testAtTheParkLimitAReadGoesAheadWhereverItLands() throws {
        var maker = ReadArrayMaker()
        for _ in 0..<(ReadArrayMaker.parkLimit + 3) {
            let probe = [UInt8](unsafeUninitializedCapacity: 4096) { _, count in count = 0 }
            let address = probe.withUnsafeBufferPointer { Int(bitPattern: $0.baseAddress) }
            _ = consume probe
            maker.streamOffset = (address - 8) & 4095  // this block would be 8 bytes past its source
            let array = maker.makeArray(capacity: 4096) { buffer in
                buffer.initialize(repeating: 0xAB)
                return buffer.count
            }
            XCTAssertEqual(array.count, 4096)
            XCTAssertTrue(array.allSatisfy { $0 == 0xAB })
        }
        XCTAssertLessThanOrEqual(maker.parked.count, ReadArrayMaker.parkLimit)
        maker.releaseParked()
        XCTAssertTrue(maker.parked.isEmpty)
    }

    private func socketPair() throws -> (Int32, Int32) {
        var descriptors: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &descriptors) == 0 else {
            throw TransportError.uv(-errno, "socketpair")
        }
        var size: Int32 = 256 * 1024
        setsockopt(descriptors[1], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        return (descriptors[0], descriptors[1])
    }
}
