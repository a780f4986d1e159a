#!/usr/bin/env bash
# Sets up what is missing, then runs the main demo (every stack on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/setup.sh
swift run -c release taps-demo "$@"
