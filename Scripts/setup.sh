#!/usr/bin/env bash
# Installs the Debian packages swift-taps builds against, only those that are missing.
set -euo pipefail
needed=()
for package in libuv1-dev libusrsctp-dev libssl-dev openssl pkg-config tshark; do
    dpkg -s "$package" >/dev/null 2>&1 || needed+=("$package")
done
if [ ${#needed[@]} -gt 0 ]; then
    echo "installing: ${needed[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}"
fi
export PATH="/opt/swift/usr/bin:$PATH"
