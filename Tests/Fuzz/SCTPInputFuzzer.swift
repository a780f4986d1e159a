// libFuzzer target for the SCTP packet-input path: every input goes through the same checks as a
// datagram arriving at an SCTP listener (SCTPPacket.verify), and the ones that pass reach usrsctp's
// parser through usrsctp_conninput, towards a listening AF_CONN socket. Half the inputs get a valid
// checksum first, so the fuzzer explores usrsctp's chunk parsing and not only the checksum check.
// Built and run by Scripts/fuzz-sctp.sh (swiftc -sanitize=fuzzer,address).
import CUsrSCTP
import Glibc

nonisolated(unsafe) private var started = false
nonisolated(unsafe) private var handle = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

private func start() {
    usrsctp_init_nothreads(0, { _, _, _, _, _ in 0 }, nil)  // replies go nowhere
    usrsctp_enable_crc32c_offload()
    usrsctp_register_address(handle)
    let socket = usrsctp_socket(AF_CONN, 1, Int32(IPPROTO_SCTP), nil, nil, 0, nil)
    var address = sockaddr_conn()
    address.sconn_family = UInt16(AF_CONN)
    address.sconn_port = UInt16(5000).bigEndian
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { usrsctp_bind(socket, UnsafeMutablePointer(mutating: $0), socklen_t(MemoryLayout<sockaddr_conn>.size)) }
    }
    usrsctp_listen(socket, 8)
    started = true
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if !started { start() }
    var packet = Array(UnsafeBufferPointer(start: data, count: size))
    if size >= SCTPPacket.minimumLength && size % 2 == 0 {
        // Aim at usrsctp's listener and give the packet a correct checksum.
        packet[2] = 0x13; packet[3] = 0x88
        SCTPPacket.fillChecksum(&packet)
    }
    packet.withUnsafeBytes { bytes in
        if SCTPPacket.verify(bytes) == .valid {
            usrsctp_conninput(handle, bytes.baseAddress, bytes.count, 0)
        }
    }
    usrsctp_handle_timers(10)
    return 0
}
