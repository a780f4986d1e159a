#!/usr/bin/env bash
# Sets up what is missing, then builds and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
