#!/usr/bin/env python3
"""Draws taps-bench's bulk throughput figures against their baselines as one SVG.

Reads the JSON lines `taps-bench --json` prints (other lines are ignored) and writes a horizontal
bar chart, log scale, one pair of bars per measurement: Taps and its baseline, with the ratio.

    .build/release/taps-bench --stack tcp --stack tls-tcp --rounds 5 --json > figures.jsonl
    Scripts/plot-benchmarks.py figures.jsonl Docs/benchmarks.svg
"""
import json
import math
import sys

BASELINE_NAMES = {"tcp": "C (libuv)", "tls-tcp": "C (libuv + OpenSSL)", "udp": "C (libuv)", "dtls-udp": "Taps udp",
                  "sctp": "C (usrsctp threads)",
                  "tls-sctp": "Taps sctp", "dtls-chunk-sctp": "Taps sctp"}


def measurements(lines):
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "mbps" not in record or record.get("mixed") or "accept_loops" in record:
            continue
        label = record["stack"]
        details = []
        if "mtu" in record:
            details.append(f"MTU {record['mtu']}")
        if "km" in record:
            details.append(record["km"])
        if record.get("streams", 1) > 1:
            details.append(f"{record['streams']} streams")
        size = record["message_size"]
        details.append(f"{size // 1024} KB" if size >= 4096 else f"{size} B")
        yield f"{label} ({', '.join(details)})", record["mbps"], record["baseline_mbps"], BASELINE_NAMES.get(label, "baseline")


def svg(rows):
    left, right, bar, gap, top = 300, 150, 12, 14, 40
    width = 980
    plot = width - left - right
    low, high = 10.0, 10_000.0

    def x(value):
        value = min(max(value, low), high)
        return left + plot * (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))

    height = top + len(rows) * (2 * bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">Bulk throughput on loopback, MB/s (log scale): Taps and its baseline</text>']
    for tick in (10, 30, 100, 300, 1000, 3000, 10000):
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 8}" x2="{x(tick):.1f}" y2="{height - 30}" stroke="#ddd"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 14}" text-anchor="middle" fill="#555">{tick}</text>')
    y = top
    for label, ours, baseline, baseline_name in rows:
        ratio = ours / baseline if baseline else 0
        out.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(ours) - left:.1f}" height="{bar}" fill="#2b6cb0"/>')
        out.append(f'<text x="{x(ours) + 4:.1f}" y="{y + bar - 2}" fill="#2b6cb0">Taps {ours:.0f}  ({ratio:.2f}x)</text>')
        out.append(f'<rect x="{left}" y="{y + bar}" width="{x(baseline) - left:.1f}" height="{bar}" fill="#a0aec0"/>')
        out.append(f'<text x="{x(baseline) + 4:.1f}" y="{y + 2 * bar - 2}" fill="#4a5568">{baseline_name} {baseline:.0f}</text>')
        y += 2 * bar + gap
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot-benchmarks.py FIGURES.jsonl OUTPUT.svg")
    with open(sys.argv[1]) as source:
        rows = list(measurements(source))
    if not rows:
        sys.exit("no bulk throughput figures (taps-bench --json) in " + sys.argv[1])
    with open(sys.argv[2], "w") as target:
        target.write(svg(rows))


if __name__ == "__main__":
    main()
