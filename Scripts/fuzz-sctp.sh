#!/usr/bin/env bash
# Fuzzes the SCTP packet-input path (SCTPPacket checks, then usrsctp's parser) with libFuzzer for a
# bounded time. Usage: Scripts/fuzz-sctp.sh [SECONDS]  (default 60). The corpus lives in Tests/Fuzz/corpus;
# new inputs that reach new code are added to it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=.build-fuzz
mkdir -p "$build/module"
# CTapsShims as a module for swiftc, and its C file compiled with the same sanitizers.
cat > "$build/module/module.modulemap" <<MAP
module CTapsShims { header "$PWD/Sources/CTapsShims/include/CTapsShims.h" export * }
MAP
clang -c -O1 -fsanitize=fuzzer-no-link,address -I Sources/CTapsShims/include Sources/CTapsShims/shims.c -o "$build/shims.o"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name TapsFuzz \
    -I Sources/CUsrSCTP -I "$build/module" \
    Tests/Fuzz/SCTPInputFuzzer.swift Sources/Taps/SCTP/SCTPPacket.swift \
    "$build/shims.o" -lusrsctp -lssl -lcrypto -o "$build/sctp-input-fuzzer"
"$build/sctp-input-fuzzer" -max_total_time="$seconds" -max_len=2048 Tests/Fuzz/corpus
