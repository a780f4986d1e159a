#!/usr/bin/env bash
# Sets up what is missing, then builds and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/setup.sh
swift build --build-tests
# A hung test must fail the run, not hold CI for its whole budget.
timeout 1200 swift test --skip-build "$@"
# A bounded fuzzing run of the DTLS chunk's input paths (a crash or a wrong round trip fails it).
if [[ $# -eq 0 ]]; then Scripts/fuzz-dtls-chunk.sh 20 --scratch > /dev/null 2>&1 || { echo "DTLS chunk fuzzer failed; run Scripts/fuzz-dtls-chunk.sh 20 --scratch"; exit 1; }; fi
# The DocC catalog and the doc comments build without a warning, and every public symbol has one.
if [[ $# -eq 0 ]]; then Scripts/docs.sh; fi
# The committed plot must be what the committed figures draw.
python3 Scripts/plot-benchmarks.py Docs/benchmark-figures.jsonl "${TMPDIR:-/tmp}/benchmarks.svg"
cmp -s Docs/benchmarks.svg "${TMPDIR:-/tmp}/benchmarks.svg" || { echo "Docs/benchmarks.svg is stale: Scripts/plot-benchmarks.py Docs/benchmark-figures.jsonl Docs/benchmarks.svg"; exit 1; }
