#!/usr/bin/env python3
"""A lossy, slow link in user space, for kernels without sch_netem.

Usage: lag.py TUN DELAY_MS LOSS_PERCENT

Attaches to the existing tun device TUN (created with `ip tuntap add dev TUN mode tun`), and writes
every IP packet the kernel routes into it back into it after DELAY_MS milliseconds, dropping
LOSS_PERCENT % of them at random. tests/nat/netns.sh routes the NAT box's traffic through it in both
directions, so each direction is delayed and lossy. Prints one statistics line on SIGTERM.
"""
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    name, delay_ms, loss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 100.0
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    queue = []  # (due, seq, packet)
    seq = passed = dropped = 0
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"lag {name}: delay {delay_ms} ms, loss {loss * 100:.1f} %", flush=True)
    while running:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                pass
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        while True:
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            if random.random() < loss:
                dropped += 1
                continue
            passed += 1
            seq += 1
            heapq.heappush(queue, (time.monotonic() + delay_ms / 1000.0, seq, pkt))
    print(f"lag {name}: passed {passed}, dropped {dropped}", flush=True)


if __name__ == "__main__":
    main()
