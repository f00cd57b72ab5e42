#!/usr/bin/env python3
"""A steady UDP load with per-query latency, for watching a server through a reload.

dnsperf saturates and reports averages; here every query is sent on a fixed schedule
(open loop: a stalled server does not slow the sender down) and its latency is
recorded, so the harness can say how many answers came per second during a window,
which were lost and how late the worst was.

    python tools/benchlib/loadgen.py --port P --rate 5000 --queries Q.bin --out OUT

``Q.bin`` is dnsperf -B input (2-byte length, message), cycled. Runs until SIGTERM,
then waits ``--timeout`` for late answers and writes OUT (JSON) and OUT.bin: for every
query its send time (time.monotonic(), the same clock in every process) and its
latency in seconds (-1: no answer within ``--timeout``). Sends only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import signal
import socket
import struct
import sys
import time
from array import array
from pathlib import Path

LOCALHOST = "127.0.0.1"
SOCKETS = 8  # (socket, ID) pairs identify a query: 8 x 65536 before an ID is reused


def read_queries(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 2 <= len(data):
        (n,) = struct.unpack_from("!H", data, pos)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if not out:
        raise SystemExit(f"{path}: no queries")
    return out


def run(port: int, rate: float, queries: list[bytes], timeout: float) -> tuple[array, array]:
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((LOCALHOST, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    sent, lat = array("d"), array("d")
    pending: dict[tuple[int, int], int] = {}
    interval = 1.0 / rate
    next_t = time.monotonic()

    def receive(wait: float) -> None:
        for key, _ in sel.select(max(wait, 0.0)):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                now = time.monotonic()
                if len(data) < 2:
                    continue
                seq = pending.pop((key.data, data[0] << 8 | data[1]), None)
                if seq is not None:
                    lat[seq] = now - sent[seq]

    while not stop:
        now = time.monotonic()
        if now - next_t > 1.0:  # we were not scheduled for a second: do not burst
            next_t = now
        while next_t <= now:
            seq = len(sent)
            idx, qid = seq % SOCKETS, (seq // SOCKETS) & 0xFFFF
            wire = queries[seq % len(queries)]
            pending[(idx, qid)] = seq  # an older query with this key is long lost
            sent.append(now)
            lat.append(-1.0)
            with contextlib.suppress(OSError):  # a failed send counts as lost
                socks[idx].send(struct.pack("!H", qid) + wire[2:])
            next_t += interval
        receive(next_t - time.monotonic())
    end = time.monotonic() + timeout
    while pending and time.monotonic() < end:
        receive(min(0.05, end - time.monotonic()))
    for i, v in enumerate(lat):
        if v > timeout:
            lat[i] = -1.0
    return sent, lat


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--timeout", type=float, default=2.0)
    args = ap.parse_args(argv)
    sent, lat = run(args.port, args.rate, read_queries(args.queries), args.timeout)
    with args.out.with_suffix(".bin").open("wb") as f:
        sent.tofile(f)
        lat.tofile(f)
    answered = sum(1 for v in lat if v >= 0)
    summary = {"sent": len(sent), "answered": answered, "rate": args.rate}
    args.out.write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
