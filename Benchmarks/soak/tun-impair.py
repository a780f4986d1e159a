#!/usr/bin/env python3
"""A faulty IPv4 path through a TUN device, for taps-soak's tcp and tls-tcp runs (kernel TCP cannot
go through taps' in-process lossy path). Run it as root inside a network namespace of its own
(Benchmarks/soak.sh does): it makes the device, routes two virtual addresses through it and
reflects every packet back into the kernel, so a client that connects to SERVER_FACE reaches a
listener on LOCAL and each direction crosses this program once.

    client LOCAL:c -> SERVER_FACE:p   becomes   CLIENT_FACE:c -> LOCAL:p
    server LOCAL:p -> CLIENT_FACE:c   becomes   SERVER_FACE:p -> LOCAL:c

On the way each packet may be dropped, corrupted (one byte flipped after the checksums are set, so
the receiving kernel discards it, as a real network's corruption is), duplicated, or held back
behind the next packet (at most 10 ms), with the same rates and meaning as taps' LossyPath. On
SIGTERM it prints its counts as one JSON line."""

import argparse
import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

LOCAL = socket.inet_aton("10.77.0.1")
SERVER_FACE = socket.inet_aton("10.77.0.2")
CLIENT_FACE = socket.inet_aton("10.77.1.1")
LONGEST_HOLD = 0.010


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reflect(packet):
    """The packet with its addresses swapped to the other face, checksums recomputed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    destination = bytes(packet[16:20])
    if destination == SERVER_FACE:
        source, destination = CLIENT_FACE, LOCAL
    elif destination == CLIENT_FACE:
        source, destination = SERVER_FACE, LOCAL
    else:
        return None
    packet = bytearray(packet)
    packet[12:16] = source
    packet[16:20] = destination
    packet[10:12] = b"\0\0"
    packet[10:12] = struct.pack("!H", checksum(bytes(packet[:header])))
    protocol = packet[9]
    offset = {6: 16, 17: 6}.get(protocol)
    if offset is not None and len(packet) >= header + offset + 2:
        segment = packet[header:]
        segment[offset:offset + 2] = b"\0\0"
        pseudo = source + destination + struct.pack("!BBH", 0, protocol, len(segment))
        value = checksum(pseudo + bytes(segment))
        if protocol == 17 and value == 0:
            value = 0xFFFF
        packet[header + offset:header + offset + 2] = struct.pack("!H", value)
    return packet


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", type=float, required=True, help="drop rate; reordering as likely, duplication and corruption half as likely")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="tapsoak0")
    parser.add_argument("--ready-file", required=True, help="written once the device is up")
    options = parser.parse_args()

    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", options.device.encode(), IFF_TUN | IFF_NO_PI))
    for command in (["ip", "addr", "add", "10.77.0.1/24", "dev", options.device],
                    ["ip", "link", "set", "dev", options.device, "up", "mtu", "1500"],
                    ["ip", "route", "add", "10.77.1.0/24", "dev", options.device],
                    ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", f"net.ipv4.conf.{options.device}.rp_filter=0"]):
        subprocess.run(command, check=True)

    rates = {"loss": options.loss, "reorder": options.loss, "duplicate": options.loss / 2, "corrupt": options.loss / 2}
    generator = random.Random(options.seed)
    counts = {"written": 0, "dropped": 0, "duplicated": 0, "reordered": 0, "corrupted": 0}
    held = {}  # direction -> (packet, deadline)

    def report(*_):
        print(json.dumps(counts), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    with open(options.ready_file, "w") as ready:
        ready.write("ready\n")

    while True:
        timeout = None
        if held:
            timeout = max(0.0, min(deadline for _, deadline in held.values()) - time.monotonic())
        readable, _, _ = select.select([tun], [], [], timeout)
        now = time.monotonic()
        for direction, (packet, deadline) in list(held.items()):
            if deadline <= now:
                del held[direction]
                os.write(tun, packet)
        if not readable:
            continue
        packet = reflect(os.read(tun, 65535))
        if packet is None:
            continue
        counts["written"] += 1
        if generator.random() < rates["loss"]:
            counts["dropped"] += 1
            continue
        if generator.random() < rates["corrupt"]:
            header = (packet[0] & 0x0F) * 4
            index = generator.randrange(header, len(packet)) if len(packet) > header else 0
            packet[index] ^= generator.randrange(1, 256)
            counts["corrupted"] += 1
        batch = [bytes(packet)]
        if generator.random() < rates["duplicate"]:
            counts["duplicated"] += 1
            batch.append(bytes(packet))
        direction = bytes(packet[16:20]) + bytes(packet[12:16])
        if generator.random() < rates["reorder"] and direction not in held:
            counts["reordered"] += 1
            held[direction] = (batch[0], now + LONGEST_HOLD)
            batch = batch[1:]
        elif direction in held:
            batch.append(held.pop(direction)[0])
        for datagram in batch:
            os.write(tun, datagram)


if __name__ == "__main__":
    main()
