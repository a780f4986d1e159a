#!/usr/bin/env bash
# A bounded soak, not part of the test suite: every stack moves 50 MiB through a faulty path at 1, 5
# and 10 % loss (reordering as likely, duplication and corruption half as likely) and the receiver
# checks every byte. UDP-based stacks use taps' in-process lossy path; tcp and tls-tcp go through
# Benchmarks/soak/tun-impair.py in a network namespace of their own (needs root and /dev/net/tun),
# since kernel TCP never passes through taps' datagram layers. Each run is bounded by --timeout.
#
#   Benchmarks/soak.sh [--stack NAME]... [--loss RATE]... [--megabytes N] [--seed N] [--timeout SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH=/opt/swift/usr/bin:$PATH

stacks=() losses=() megabytes=50 seed=1 timeout=900
while [ $# -gt 0 ]; do
    case "$1" in
        --stack) stacks+=("$2"); shift 2 ;;
        --loss) losses+=("$2"); shift 2 ;;
        --megabytes) megabytes="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        *) echo "usage: $0 [--stack NAME]... [--loss RATE]... [--megabytes N] [--seed N] [--timeout SECONDS]" >&2; exit 2 ;;
    esac
done
[ ${#stacks[@]} -gt 0 ] || stacks=(tcp tls-tcp udp dtls-udp sctp tls-sctp dtls-chunk-sctp)
[ ${#losses[@]} -gt 0 ] || losses=(0.01 0.05 0.10)

swift build -c release --product taps-soak >&2
soak="$(swift build -c release --show-bin-path)/taps-soak"
common=(--megabytes "$megabytes" --seed "$seed" --timeout "$timeout")
status=0

# One tcp or tls-tcp run: a fresh namespace with the TUN impairer between the client and the listener.
soak_through_tun() {
    local stack="$1" loss="$2" ready counts
    ready="$(mktemp)" counts="$(mktemp)"
    rm -f "$ready"
    unshare -n bash -c '
        set -e
        ip link set lo up
        python3 Benchmarks/soak/tun-impair.py --loss "$2" --seed "$3" --ready-file "$4" > "$5" &
        impairer=$!
        for _ in $(seq 100); do [ -f "$4" ] && break; sleep 0.05; done
        result=0
        "$1" "${@:6}" --loss "$2" --listen-host 10.77.0.1 --connect-host 10.77.0.2 --external-faults || result=$?
        kill -TERM $impairer; wait $impairer || true
        exit $result
    ' soak "$soak" "$loss" "$seed" "$ready" "$counts" --stack "$stack" "${common[@]}" || status=1
    echo "    path through the TUN impairer: $(cat "$counts")"
    rm -f "$ready" "$counts"
}

for stack in "${stacks[@]}"; do
    case "$stack" in
        tcp|tls-tcp)
            if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/net/tun ]; then
                echo "$stack: skipped (the TUN impairer needs root and /dev/net/tun)"
                continue
            fi
            for loss in "${losses[@]}"; do soak_through_tun "$stack" "$loss"; done ;;
        *)
            loss_options=()
            for loss in "${losses[@]}"; do loss_options+=(--loss "$loss"); done
            "$soak" --stack "$stack" "${loss_options[@]}" "${common[@]}" || status=1 ;;
    esac
done
exit $status
