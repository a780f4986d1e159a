import XCTest
@testable import Taps

final class CRC32cTests: XCTestCase {
    func testCheckValueFromUsrsctp() {
        // The CRC-32C check value of "123456789" (RFC 3720 appendix B.4 lists the same polynomial).
        let value = Array("123456789".utf8).withUnsafeBytes { CRC32c.checksum($0) }
        XCTAssertEqual(value, 0xE306_9283)
    }
}
