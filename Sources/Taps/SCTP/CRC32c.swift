import CUsrSCTP

/// CRC32c as SCTP uses it (RFC 9260 appendix A), computed by usrsctp. The SCTP stack enables
/// usrsctp's checksum offload and fills / verifies the checksum itself with this.
enum CRC32c {
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        usrsctp_crc32c(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
    }
}
