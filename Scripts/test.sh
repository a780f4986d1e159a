#!/usr/bin/env bash
# Sets up what is missing, then builds and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/setup.sh
swift build --build-tests
# A hung test must fail the run, not hold CI for its whole budget.
timeout 1200 swift test --skip-build "$@"
