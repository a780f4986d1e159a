import XCTest
@testable import Taps

final class CRC32cTests: XCTestCase {
    func testCheckValueFromUsrsctp() {
        // The CRC-32C check value of "123456789" (RFC 3720 appendix B.4 lists the same polynomial).
        let value = Array("123456789".utf8).withUnsafeBytes { CRC32c.checksum($0) }
        XCTAssertEqual(value, 0xE306_9283)
    }

    func testHardwareAndSoftwareAgree() {
        var generator = SplitMix64(seed: 9)
        for length in [0, 1, 7, 8, 9, 63, 1232, 16_336] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            bytes.withUnsafeBytes { XCTAssertEqual(CRC32c.checksum($0), CRC32c.software($0), "\(length) bytes") }
        }
    }

    /// The in-place packet checksum (field read as zero) equals the checksum of a copy whose field
    /// was zeroed, whatever the field holds.
    func testPacketChecksumIgnoresTheChecksumField() {
        var generator = SplitMix64(seed: 11)
        for length in [16, 17, 20, 31, 1232, 16_336] {
            var packet = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let inPlace = packet.withUnsafeBytes { CRC32c.packetChecksum($0) }
            packet.replaceSubrange(8..<12, with: [0, 0, 0, 0])
            XCTAssertEqual(inPlace, packet.withUnsafeBytes { CRC32c.software($0) }, "\(length) bytes")
            SCTPPacket.fillChecksum(&packet)
            XCTAssertEqual(packet.withUnsafeBytes { SCTPPacket.verify($0) }, .valid)
            packet[length - 1] ^= 0x01
            XCTAssertEqual(packet.withUnsafeBytes { SCTPPacket.verify($0) }, .badChecksum)
        }
    }
}
