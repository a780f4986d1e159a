import XCTest
@testable import Taps

/// The chunk protection operator without sockets: packets in, packets out, counters.
final class DTLSChunkProtectionTests: XCTestCase {
    /// A plain SCTP packet: common header (ports 5000 -> 5001, tag 0x01020304, checksum 0) and one
    /// DATA chunk (RFC 9260 section 3.3.1) whose user data is `payload`, padded to 4 bytes.
    static func dataPacket(_ payload: [UInt8], tsn: UInt32 = 1) -> [UInt8] {
        var packet: [UInt8] = [0x13, 0x88, 0x13, 0x89, 1, 2, 3, 4, 0, 0, 0, 0]
        let length = 16 + payload.count
        packet += [0, 0x03, UInt8(length >> 8), UInt8(length & 0xFF)]
        packet += withUnsafeBytes(of: tsn.bigEndian, Array.init)
        packet += [0, 1, 0, 0, 0, 0, 0, 51]  // stream 1, ssn 0, ppid 51
        packet += payload
        while packet.count % 4 != 0 { packet.append(0) }
        return packet
    }

    static func packet(chunkType: UInt8) -> [UInt8] {
        [0x13, 0x88, 0x13, 0x89, 1, 2, 3, 4, 0, 0, 0, 0, chunkType, 0, 0, 8, 0, 0, 0, 0]
    }

    static func material(_ seed: UInt8, suite: DTLSChunkCipherSuite = .aes128GCMSHA256) -> DTLSChunkKeyMaterial {
        DTLSChunkKeyMaterial(key: (0..<suite.keyLength).map { UInt8($0) &+ seed },
                             iv: (0..<suite.ivLength).map { UInt8($0) &* 3 &+ seed },
                             sequenceNumberKey: (0..<suite.keyLength).map { UInt8($0) &* 7 &+ seed })
    }

    /// A sender and a receiver sharing one direction's keys for `epochs`.
    static func pair(suite: DTLSChunkCipherSuite = .aes128GCMSHA256, epochs: [UInt64] = [3], window: Int = 64) throws -> (DTLSChunkProtection, DTLSChunkProtection) {
        var sender = DTLSChunkProtection()
        var receiver = DTLSChunkProtection()
        try receiver.configureReplayWindow(window)
        for epoch in epochs {
            let keys = material(UInt8(epoch), suite: suite)
            try sender.establishSendKeys(keys, suite: suite, for: DTLSKeyContextID(epoch: epoch))
            try receiver.establishReceiveKeys(keys, suite: suite, for: DTLSKeyContextID(epoch: epoch))
        }
        receiver.requireProtectedPackets()
        return (sender, receiver)
    }

    static func protect(_ packet: [UInt8], with sender: inout DTLSChunkProtection) throws -> [UInt8] {
        var output = [UInt8](repeating: 0xEE, count: packet.count + DTLSChunkProtection.maximumOverhead)
        let length = packet.withUnsafeBytes { bytes in output.withUnsafeMutableBytes { sender.protect(bytes, into: $0) } }
        return Array(output.prefix(try XCTUnwrap(length, "no send keys")))
    }

    /// The receiver's verdict and, when it opened the packet, the plain packet.
    static func unprotect(_ packet: [UInt8], with receiver: inout DTLSChunkProtection) -> (DTLSChunkProtection.Inbound, [UInt8]?) {
        var output = [UInt8](repeating: 0, count: packet.count)
        let verdict = packet.withUnsafeBytes { bytes in output.withUnsafeMutableBytes { receiver.unprotect(bytes, into: $0) } }
        if case .unprotected(let length) = verdict { return (verdict, Array(output.prefix(length))) }
        return (verdict, nil)
    }

    func testTheProtectedPacketHasTheDraftsLayout() throws {
        var (sender, _) = try Self.pair()
        let plain = Self.dataPacket(Array("hello, association".utf8))
        let protected = try Self.protect(plain, with: &sender)
        // Common header unchanged; one DTLS chunk: type 0x41, no R flag, length = 4 + 1 + payload.
        XCTAssertEqual(Array(protected.prefix(12)), Array(plain.prefix(12)))
        XCTAssertEqual(protected[12], 0x41)
        XCTAssertEqual(protected[13], 0)
        let chunkLength = Int(protected[14]) << 8 | Int(protected[15])
        let record = 3 + (plain.count - 12) + 1 + 16  // unified header, chunks, content type, tag
        XCTAssertEqual(chunkLength, 4 + 1 + record)
        XCTAssertEqual(protected[16], 0, "pre-padding")
        XCTAssertEqual(protected[17], 0x28 | 3, "unified header: S=1, L=0, C=0, epoch 3 & 3")
        XCTAssertEqual(protected.count % 4, 0, "post-padded to 4 bytes")
        XCTAssertEqual(protected.count, 12 + (chunkLength + 3) / 4 * 4)
        XCTAssertTrue(protected[(12 + chunkLength)...].allSatisfy { $0 == 0 }, "post-padding is zeros")
        XCTAssertLessThanOrEqual(protected.count - plain.count, DTLSChunkProtection.maximumOverhead)
        // The payload is not in clear, and the sequence number 0 is masked.
        XCTAssertNil(protected.firstRange(of: Array("hello".utf8)))
        XCTAssertEqual(sender.counters.sentProtected, 1)
        XCTAssertEqual(sender.epochCounters[DTLSKeyContextID(epoch: 3)]?.encryptions, 1)
    }

    func testRoundTripsWithEverySuiteAndSize() throws {
        for suite in DTLSChunkCipherSuite.allCases {
            var (sender, receiver) = try Self.pair(suite: suite)
            for size in [0, 1, 3, 4, 15, 16, 17, 100, 1_200, 16_384 - 16] {
                let plain = Self.dataPacket((0..<size).map { UInt8(truncatingIfNeeded: $0 * 31) }, tsn: UInt32(size))
                let protected = try Self.protect(plain, with: &sender)
                let (verdict, opened) = Self.unprotect(protected, with: &receiver)
                XCTAssertEqual(verdict, .unprotected(length: plain.count), "\(suite) \(size)")
                XCTAssertEqual(opened, plain, "\(suite) \(size)")
            }
            XCTAssertEqual(receiver.counters.receivedProtected, 10)
            XCTAssertEqual(receiver.epochCounters[DTLSKeyContextID(epoch: 3)]?.decryptions, 10)
        }
    }

    func testChunksBeyondTwoToTheFourteenAreNotProtected() throws {
        var (sender, _) = try Self.pair()
        var fits = Self.dataPacket([UInt8](repeating: 1, count: 16_384 - 16))
        XCTAssertEqual(fits.count - 12, 16_384)
        XCTAssertNoThrow(try Self.protect(fits, with: &sender))
        fits += [0, 0, 0, 0]
        var output = [UInt8](repeating: 0, count: fits.count + DTLSChunkProtection.maximumOverhead)
        let length = fits.withUnsafeBytes { bytes in output.withUnsafeMutableBytes { sender.protect(bytes, into: $0) } }
        XCTAssertNil(length)
    }

    func testEveryTamperedByteIsDroppedExceptThoseTheReceiverMustIgnore() throws {
        var (sender, receiver) = try Self.pair()
        let plain = Self.dataPacket(Array("tamper with me".utf8))
        let protected = try Self.protect(plain, with: &sender)
        let chunkLength = Int(protected[14]) << 8 | Int(protected[15])
        // The receiver ignores the reserved flag bits, the pre-padding and the post-padding; the
        // common header is outside the record (the CRC32c covers it on the wire).
        let ignored = Set([16] + Array((12 + chunkLength)..<protected.count))
        for offset in 12..<protected.count where !ignored.contains(offset) {
            var tampered = protected
            // Byte 12 becomes 0x43, not 0x01: a packet that starts with INIT passes as plain, by the draft.
            tampered[offset] ^= offset == 13 ? 0x01 : offset == 12 ? 0x02 : 0x40
            let (verdict, opened) = Self.unprotect(tampered, with: &receiver)
            XCTAssertNil(opened, "byte \(offset) tampered, yet the packet opened")
            guard case .dropped = verdict else { return XCTFail("byte \(offset): \(verdict)") }
        }
        for offset in ignored.union([13]) {
            var tampered = protected
            tampered[offset] ^= offset == 13 ? 0x80 : 0x55  // reserved flag bit, or padding
            var fresh = try Self.pair().1
            XCTAssertEqual(Self.unprotect(tampered, with: &fresh).1, plain, "byte \(offset) must be ignored")
        }
        XCTAssertGreaterThan(receiver.counters.aeadFailures, 0)
        XCTAssertEqual(receiver.counters.receivedProtected, 0)
        // Still intact: the genuine packet opens afterwards.
        XCTAssertEqual(Self.unprotect(protected, with: &receiver).1, plain)
    }

    func testEveryTruncationIsDropped() throws {
        var (sender, receiver) = try Self.pair()
        let plain = Self.dataPacket(Array("truncate me".utf8))
        let protected = try Self.protect(plain, with: &sender)
        for length in 0..<protected.count where length != protected.count - 1 && length != protected.count - 2 && length != protected.count - 3 {
            let (verdict, opened) = Self.unprotect(Array(protected.prefix(length)), with: &receiver)
            XCTAssertNil(opened, "\(length) bytes")
            guard case .dropped = verdict else { return XCTFail("\(length) bytes: \(verdict)") }
        }
        // Dropping only post-padding leaves the record whole.
        let chunkLength = Int(protected[14]) << 8 | Int(protected[15])
        XCTAssertEqual(Self.unprotect(Array(protected.prefix(12 + chunkLength)), with: &receiver).1, plain)
    }

    func testReplaysAndPacketsOlderThanTheWindowAreDroppedReorderingInsideItIsNot() throws {
        var (sender, receiver) = try Self.pair(window: 64)
        let packets = try (0..<200).map { try Self.protect(Self.dataPacket([UInt8($0)], tsn: UInt32($0)), with: &sender) }
        XCTAssertNotNil(Self.unprotect(packets[10], with: &receiver).1)
        XCTAssertEqual(Self.unprotect(packets[10], with: &receiver).0, .dropped(.replayed))
        // Reordered: 5 arrives after 10, inside the window.
        XCTAssertNotNil(Self.unprotect(packets[5], with: &receiver).1)
        XCTAssertEqual(Self.unprotect(packets[5], with: &receiver).0, .dropped(.replayed))
        XCTAssertNotNil(Self.unprotect(packets[150], with: &receiver).1)
        // 150 - 64 = 86: 86 is just outside, 87 just inside.
        XCTAssertEqual(Self.unprotect(packets[86], with: &receiver).0, .dropped(.replayed))
        XCTAssertNotNil(Self.unprotect(packets[87], with: &receiver).1)
        XCTAssertEqual(Self.unprotect(packets[20], with: &receiver).0, .dropped(.replayed))
        XCTAssertEqual(receiver.counters.replaysDropped, 4)
        XCTAssertEqual(receiver.epochCounters[DTLSKeyContextID(epoch: 3)]?.replaysDropped, 4)
    }

    func testALargerWindowAcceptsDeeperReordering() throws {
        var (sender, receiver) = try Self.pair(window: 1_000)
        let packets = try (0..<900).map { try Self.protect(Self.dataPacket([1], tsn: UInt32($0)), with: &sender) }
        XCTAssertNotNil(Self.unprotect(packets[899], with: &receiver).1)
        for index in stride(from: 898, through: 0, by: -1) {
            XCTAssertNotNil(Self.unprotect(packets[index], with: &receiver).1, "packet \(index)")
        }
        XCTAssertEqual(receiver.counters.receivedProtected, 900)
        XCTAssertThrowsError(try receiver.configureReplayWindow(0))
    }

    func testSequenceNumbersReconstructAcrossTheSixteenBitWrap() throws {
        var (sender, receiver) = try Self.pair()
        for index in 0..<70_000 {
            let protected = try Self.protect(Self.dataPacket([UInt8(truncatingIfNeeded: index)]), with: &sender)
            // Deliver a sample, enough that the receiver never falls 2^15 behind.
            if index % 1_000 == 0 || index >= 65_530 {
                XCTAssertNotNil(Self.unprotect(protected, with: &receiver).1, "packet \(index)")
            }
        }
        XCTAssertEqual(receiver.counters.aeadFailures, 0)
    }

    func testAPacketFarAheadOfTheWindowIsNotAccepted() throws {
        var (sender, receiver) = try Self.pair()
        for _ in 0..<30_000 { _ = try Self.protect(Self.dataPacket([0]), with: &sender) }
        XCTAssertNotNil(Self.unprotect(try Self.protect(Self.dataPacket([0]), with: &sender), with: &receiver).1)
        for _ in 0..<40_000 { _ = try Self.protect(Self.dataPacket([0]), with: &sender) }
        // 40,001 ahead, more than 2^15: the 16 bits on the wire reconstruct to a number behind, which fails.
        let (verdict, opened) = Self.unprotect(try Self.protect(Self.dataPacket([9]), with: &sender), with: &receiver)
        XCTAssertNil(opened)
        guard case .dropped = verdict else { return XCTFail("\(verdict)") }
    }

    func testOtherEpochsAndOtherKeysAreDropped() throws {
        var (sender, _) = try Self.pair(epochs: [3, 4])
        var (_, receiver) = try Self.pair(epochs: [3])
        let epoch4 = try Self.protect(Self.dataPacket([4]), with: &sender)
        XCTAssertEqual(epoch4[17], 0x28 | 0)  // 4 & 3
        XCTAssertEqual(Self.unprotect(epoch4, with: &receiver).0, .dropped(.noKey))
        // Same epoch, other keys.
        var stranger = DTLSChunkProtection()
        try stranger.establishSendKeys(Self.material(99), suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 3))
        let foreign = try Self.protect(Self.dataPacket([3]), with: &stranger)
        XCTAssertEqual(Self.unprotect(foreign, with: &receiver).0, .dropped(.failedAuthentication))
        // Restart-flagged packets need restart keys.
        var restarting = DTLSChunkProtection()
        let restart = DTLSKeyContextID(restart: true, epoch: 3)
        try restarting.establishSendKeys(Self.material(3), suite: .aes128GCMSHA256, for: restart)
        XCTAssertFalse(restarting.protectsOutput, "restart keys wait for Set Key to Use")
        XCTAssertTrue(restarting.useSendKeys(restart))
        let flagged = try Self.protect(Self.dataPacket([5]), with: &restarting)
        XCTAssertEqual(flagged[13], 0x01)
        XCTAssertEqual(Self.unprotect(flagged, with: &receiver).0, .dropped(.noKey))
        try receiver.establishReceiveKeys(Self.material(3), suite: .aes128GCMSHA256, for: restart)
        XCTAssertNotNil(Self.unprotect(flagged, with: &receiver).1)
        XCTAssertEqual(receiver.counters.noKeyDropped, 2)
        XCTAssertEqual(receiver.counters.aeadFailures, 1)
        XCTAssertEqual(receiver.epochCounters[DTLSKeyContextID(epoch: 3)]?.failedDecryptions, 1)
    }

    func testRekeyingReadsTheOldEpochWhileTheNewOneStarts() throws {
        var sender = DTLSChunkProtection()
        var receiver = DTLSChunkProtection()
        let epoch3 = DTLSKeyContextID(epoch: 3), epoch4 = DTLSKeyContextID(epoch: 4)
        try sender.establishSendKeys(Self.material(3), suite: .aes128GCMSHA256, for: epoch3)
        try receiver.establishReceiveKeys(Self.material(3), suite: .aes128GCMSHA256, for: epoch3)
        let old = try Self.protect(Self.dataPacket([3]), with: &sender)
        // The receiver installs epoch 4 before the sender uses it (the draft's SHOULD).
        let chacha = Self.material(4, suite: .chacha20Poly1305SHA256)
        try receiver.establishReceiveKeys(chacha, suite: .chacha20Poly1305SHA256, for: epoch4)
        try sender.establishSendKeys(chacha, suite: .chacha20Poly1305SHA256, for: epoch4)
        XCTAssertEqual(sender.sendKeyInUse, epoch4)
        let new = try Self.protect(Self.dataPacket([4]), with: &sender)
        XCTAssertNotNil(Self.unprotect(new, with: &receiver).1)
        XCTAssertNotNil(Self.unprotect(old, with: &receiver).1, "the old epoch's packet in flight is still read")
        XCTAssertTrue(receiver.destroyReceiveKeys(for: epoch3))
        XCTAssertEqual(Self.unprotect(old, with: &receiver).0, .dropped(.noKey))
        XCTAssertTrue(sender.destroySendKeys(for: epoch3))
        XCTAssertEqual(sender.installedSendContexts, [epoch4])
    }

    func testOfTwoReceiveEpochsWithTheSameLowBitsTheNewerReads() throws {
        // Epochs 3 and 7 share the two bits on the wire (3); the newer one is tried.
        var receiver = DTLSChunkProtection()
        for epoch: UInt64 in 3...7 {
            try receiver.establishReceiveKeys(Self.material(UInt8(epoch)), suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: epoch))
        }
        var old = DTLSChunkProtection(), new = DTLSChunkProtection()
        try old.establishSendKeys(Self.material(3), suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 3))
        for epoch: UInt64 in 3...7 {
            try new.establishSendKeys(Self.material(UInt8(epoch)), suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: epoch))
        }
        XCTAssertEqual(new.sendKeyInUse, DTLSKeyContextID(epoch: 7))
        XCTAssertNotNil(Self.unprotect(try Self.protect(Self.dataPacket([7]), with: &new), with: &receiver).1)
        XCTAssertEqual(Self.unprotect(try Self.protect(Self.dataPacket([3]), with: &old), with: &receiver).0, .dropped(.failedAuthentication))
        // Once epoch 7 is destroyed, epoch 3 reads again.
        XCTAssertTrue(receiver.destroyReceiveKeys(for: DTLSKeyContextID(epoch: 7)))
        XCTAssertNotNil(Self.unprotect(try Self.protect(Self.dataPacket([3]), with: &old), with: &receiver).1)
    }

    func testKeyInstallationFollowsTheDraftsRules() throws {
        var protection = DTLSChunkProtection()
        let keys = Self.material(1)
        XCTAssertThrowsError(try protection.establishSendKeys(keys, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 4)),
                             "the first primary epoch is 3")
        XCTAssertThrowsError(try protection.establishReceiveKeys(keys, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 2)))
        try protection.establishSendKeys(keys, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 3))
        XCTAssertThrowsError(try protection.establishSendKeys(keys, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 5)))
        XCTAssertNoThrow(try protection.establishSendKeys(keys, suite: .aes128GCMSHA256, for: DTLSKeyContextID(epoch: 4)))
        // Key lengths are checked against the suite before anything is installed.
        var short = keys
        short.key.removeLast()
        for (material, suite) in [(short, DTLSChunkCipherSuite.aes128GCMSHA256), (keys, .aes256GCMSHA384),
                                  (DTLSChunkKeyMaterial(key: keys.key, iv: [1, 2], sequenceNumberKey: keys.sequenceNumberKey), .aes128GCMSHA256)] {
            XCTAssertThrowsError(try protection.establishReceiveKeys(material, suite: suite, for: DTLSKeyContextID(epoch: 3))) { error in
                XCTAssertEqual((error as? TransportError)?.code, .invalidArgument)
            }
        }
        XCTAssertTrue(protection.installedReceiveContexts.isEmpty)
    }

    func testPlainPacketsPassUntilProtectionIsRequiredThenOnlyInitAndInitAckDo() throws {
        var protection = DTLSChunkProtection()
        let data = Self.dataPacket([1, 2, 3])
        XCTAssertEqual(Self.unprotect(data, with: &protection).0, .plain)
        protection.requireProtectedPackets()
        XCTAssertEqual(Self.unprotect(data, with: &protection).0, .dropped(.unprotected))
        XCTAssertEqual(Self.unprotect(Self.packet(chunkType: 1), with: &protection).0, .plain, "INIT (restart)")
        XCTAssertEqual(Self.unprotect(Self.packet(chunkType: 2), with: &protection).0, .plain, "INIT ACK")
        XCTAssertEqual(Self.unprotect(Self.packet(chunkType: 10), with: &protection).0, .dropped(.unprotected), "COOKIE ECHO")
        XCTAssertEqual(protection.counters.droppedUnprotected, 2)
    }

    func testADTLSChunkBundledWithOtherChunksDropsThePacket() throws {
        var (sender, receiver) = try Self.pair()
        let protected = try Self.protect(Self.dataPacket([7]), with: &sender)
        // DATA first, the DTLS chunk after it.
        let data = Self.dataPacket([8])
        let behind = data + protected[12...]
        XCTAssertEqual(Self.unprotect(behind, with: &receiver).0, .dropped(.malformed))
        // The DTLS chunk first, a chunk after it.
        let ahead = protected + Self.packet(chunkType: 14)[12...]
        XCTAssertEqual(Self.unprotect(ahead, with: &receiver).0, .dropped(.malformed))
        XCTAssertEqual(receiver.counters.malformedDropped, 2)
        XCTAssertNotNil(Self.unprotect(protected, with: &receiver).1)
    }
}
