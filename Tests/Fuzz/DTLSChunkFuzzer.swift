// libFuzzer target for the DTLS chunk's input paths: unprotecting a packet (chunk header, unified
// record header, record-number mask, AEAD, replay window, inner plaintext), reading the 0x8006
// parameter out of an INIT and the client's INIT out of a COOKIE ECHO. The first byte picks the path:
//   0: the rest is an incoming packet for an operator that has keys for epochs 3 and 4 and the
//      restart context, and requires protection;
//   1: the rest is a plain packet: protected, it must open to the same bytes, and with one byte
//      changed (chosen by the input) it must not open to anything else;
//   2: the rest is an INIT or COOKIE ECHO whose parameters are parsed, a key management message of
//      each handshake method (DCI byte and records; T bit, epoch and records or a control message)
//      and a saved restart context, each of which must encode back to itself.
// Built and run by Scripts/fuzz-dtls-chunk.sh (swiftc -sanitize=fuzzer,address).
import Glibc

nonisolated(unsafe) private var receiver = DTLSChunkProtection()
nonisolated(unsafe) private var sender = DTLSChunkProtection()
nonisolated(unsafe) private var roundTrip = DTLSChunkProtection()
nonisolated(unsafe) private var started = false

private func keys(_ seed: UInt8) -> DTLSChunkKeyMaterial {
    DTLSChunkKeyMaterial(key: (0..<16).map { UInt8($0) &+ seed }, iv: (0..<12).map { UInt8($0) &* 3 &+ seed },
                         sequenceNumberKey: (0..<16).map { UInt8($0) &* 7 &+ seed })
}

private func start() {
    started = true
    let epoch3 = DTLSKeyContextID(epoch: 3), epoch4 = DTLSKeyContextID(epoch: 4), restart = DTLSKeyContextID(restart: true, epoch: 3)
    try! receiver.establishReceiveKeys(keys(3), suite: .aes128GCMSHA256, for: epoch3)
    try! receiver.establishReceiveKeys(keys(4), suite: .aes128GCMSHA256, for: epoch4)
    try! receiver.establishReceiveKeys(keys(9), suite: .aes128GCMSHA256, for: restart)
    receiver.requireProtectedPackets()
    try! sender.establishSendKeys(keys(3), suite: .aes128GCMSHA256, for: epoch3)
    try! roundTrip.establishReceiveKeys(keys(3), suite: .aes128GCMSHA256, for: epoch3)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if !started { start() }
    guard size > 1 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    var output = [UInt8](repeating: 0, count: size + DTLSChunkProtection.maximumOverhead)
    switch data[0] % 3 {
    case 0:
        _ = output.withUnsafeMutableBytes { receiver.unprotect(input, into: $0) }
    case 1:
        guard let length = output.withUnsafeMutableBytes({ sender.protect(input, into: $0) }) else { return 0 }
        var protected = Array(output.prefix(length))
        var opened = [UInt8](repeating: 0, count: length)
        let verdict = protected.withUnsafeBytes { bytes in opened.withUnsafeMutableBytes { roundTrip.unprotect(bytes, into: $0) } }
        if case .unprotected(let plainLength) = verdict {
            guard Array(opened.prefix(plainLength)) == Array(input) || input.count < SCTPPacket.commonHeaderLength + 4 else { abort() }
        }
        // One changed byte inside the record never yields different chunks.
        let offset = SCTPPacket.commonHeaderLength + 5 + Int(data[size - 1]) % max(1, length - SCTPPacket.commonHeaderLength - 5)
        guard offset < length else { return 0 }
        protected[offset] ^= 0x01
        let tampered = protected.withUnsafeBytes { bytes in opened.withUnsafeMutableBytes { roundTrip.unprotect(bytes, into: $0) } }
        if case .unprotected(let plainLength) = tampered, Array(opened.prefix(plainLength)) != Array(input) { abort() }
    default:
        _ = SCTPHandshakeChunks.keyManagementParameter(input, chunkAt: SCTPPacket.commonHeaderLength)
        _ = SCTPHandshakeChunks.cookieContents(input)
        _ = SCTPHandshakeChunks.abortCauses(input)
        _ = SCTPHandshakeChunks.abortReason(input)
        let bytes = Array(input)
        if let message = DTLSKeyManagementMessage(bytes: bytes) {
            if message.bytes != [bytes[0] & 3] + bytes.dropFirst() { abort() }
            _ = message.startsWithClientHello
        }
        if let message = TLSKeyManagementMessage(bytes: bytes) {
            if message.bytes != bytes { abort() }
            if case .records(let records) = message.content { _ = TLSKeyManagementMessage.startsWithClientHello(records) }
        }
        let restartBytes = DTLSChunkRestartContext.marker + bytes
        if let context = try? DTLSChunkRestartContext(bytes: restartBytes), context.bytes != restartBytes { abort() }
        if let tsn = SCTPTSNScan.highestDataTSN(input), SCTPTSNScan.precedes(tsn, tsn) { abort() }
        _ = SCTPTSNScan.cumulativeTSNAck(input)
        if let parameter = SCTPHandshakeChunks.keyManagementParameter(input, chunkAt: SCTPPacket.commonHeaderLength) {
            let ours = DTLSKeyManagementParameter(tieBreaker: 1, flags: [.client, .server], methods: [.preSharedParameters])
            _ = DTLSChunkNegotiation.agree(local: ours, peer: parameter)
        }
    }
    return 0
}
