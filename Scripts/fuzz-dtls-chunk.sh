#!/usr/bin/env bash
# Fuzzes the DTLS chunk's input paths (unprotection, the 0x8006 parameter, the COOKIE ECHO reader) with
# libFuzzer for a bounded time. Usage: Scripts/fuzz-dtls-chunk.sh [SECONDS] [--scratch]  (default 60).
# The corpus lives in Tests/Fuzz/dtls-chunk-corpus; new inputs that reach new code are added to it,
# or, with --scratch (the test script's bounded run), to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=.build-fuzz
mkdir -p "$build/module" Tests/Fuzz/dtls-chunk-corpus
# CTapsShims as a module for swiftc, and its C file compiled with the same sanitizers.
cat > "$build/module/module.modulemap" <<MAP
module CTapsShims { header "$PWD/Sources/CTapsShims/include/CTapsShims.h" export * }
MAP
clang -c -O1 -fsanitize=fuzzer-no-link,address -I Sources/CTapsShims/include Sources/CTapsShims/shims.c -o "$build/shims.o"
# Records are sealed and opened by RecordAEAD on BoringSSL: that file as a module of its own (it must
# never share one with COpenSSL), linked with the BoringSSL objects of the package's debug build.
swift build --target TapsDTLS13 >/dev/null
swiftc -O -sanitize=address -parse-as-library -wmo -module-name TapsDTLS13 \
    -I .build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/include \
    -emit-module -emit-module-path "$build/module/TapsDTLS13.swiftmodule" \
    -c Sources/TapsDTLS13/RecordAEAD.swift -o "$build/record-aead.o"
mapfile -t boringssl < <(find .build/debug/CNIOBoringSSL.build -name '*.o')
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name TapsChunkFuzz \
    -I Sources/CUsrSCTP -I Sources/COpenSSL -I "$build/module" \
    Tests/Fuzz/DTLSChunkFuzzer.swift Sources/Taps/SCTP/SCTPPacket.swift Sources/Taps/API/TransportError.swift \
    Sources/Taps/DTLSChunk/DTLSChunkProtection.swift Sources/Taps/DTLSChunk/DTLSRecord.swift \
    Sources/Taps/DTLSChunk/RecordCipher.swift Sources/Taps/DTLSChunk/ReplayWindow.swift \
    Sources/Taps/DTLSChunk/DTLSChunkCipherSuite.swift Sources/Taps/DTLSChunk/HKDFExpandLabel.swift \
    Sources/Taps/DTLSChunk/DTLSKeyManagementParameter.swift Sources/Taps/DTLSChunk/DTLSChunkNegotiation.swift \
    Sources/Taps/DTLSChunk/SCTPHandshakeChunks.swift Sources/Taps/DTLSChunk/DTLSKeyManagementMessage.swift \
    Sources/Taps/DTLSChunk/SCTPTSNScan.swift Sources/Taps/DTLSChunk/DTLSChunkRestartContext.swift \
    Sources/Taps/DTLSChunk/TLSKeyManagementMessage.swift \
    "$build/shims.o" "$build/record-aead.o" "${boringssl[@]}" -lstdc++ -lusrsctp -lssl -lcrypto -o "$build/dtls-chunk-fuzzer"
corpora=(Tests/Fuzz/dtls-chunk-corpus)
if [[ "${2:-}" == "--scratch" ]]; then
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    corpora=("$scratch" Tests/Fuzz/dtls-chunk-corpus)
fi
"$build/dtls-chunk-fuzzer" -max_total_time="$seconds" -max_len=4096 "${corpora[@]}"
