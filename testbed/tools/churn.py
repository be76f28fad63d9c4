"""New-flow churn load: ``python -m testbed.tools.churn send|recv ...`` (benchmarks/engine.py).

    recv PORT [--seconds S] [--idle S]
        counts UDP datagrams on PORT until S seconds after the first one, or --idle seconds
        (default 1) without one once the first came, or SIGTERM; then prints
        {"packets": N, "seconds": T, "pps": N/T} (T: first to last datagram).
    send HOST PORT [--seconds S] [--per-flow N] [--size BYTES]
        for S seconds, as fast as it can, sends N datagrams (default 4) from a fresh socket
        (a new ephemeral source port: a new flow for every censor and for conntrack), then
        closes it and opens the next; prints {"packets": N, "flows": F, "seconds": T}.

A censor's per-flow cost (flow-table insert, classifier and policy state per new flow) is what
this load measures, next to an iperf3 elephant flow's per-packet cost. Plain ``socket.send``,
one datagram per call: the sender, not the kernel, is the limit on an unloaded path (issue 12's
"kernel forwarding" row with this load).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType


def send(host: str, port: int, seconds: float, per_flow: int, size: int) -> dict[str, float]:
    payload = b"\x00" * size
    packets = flows = 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        # Many flows between two clock reads: a clock call per flow is a sixth of the loop.
        for _ in range(64):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.connect((host, port))
                for _ in range(per_flow):
                    try:
                        s.send(payload)
                        packets += 1
                    except OSError:  # ENOBUFS/ECONNREFUSED under load: counted as not sent
                        pass
            finally:
                s.close()
            flows += 1
    return {"packets": packets, "flows": flows, "seconds": time.monotonic() - start}


def recv(port: int, seconds: float, idle: float = 1.0) -> dict[str, float]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    stop = False

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print(json.dumps({"ready": port}), flush=True)
    s.settimeout(0.2)
    n = 0
    first = last = 0.0
    while not stop:
        try:
            s.recv(65535)
        except TimeoutError:
            if n and time.monotonic() - last > idle:
                break
            continue
        except InterruptedError:
            continue
        last = time.monotonic()
        if not n:
            first = last
        n += 1
        if last - first > seconds:
            break
    span = last - first
    return {"packets": n, "seconds": span, "pps": n / span if span > 0 else 0.0}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="churn", description="new-flow churn UDP load")
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--seconds", type=float, default=3600.0)
    r.add_argument("--idle", type=float, default=1.0)
    sd = sub.add_parser("send")
    sd.add_argument("host")
    sd.add_argument("port", type=int)
    sd.add_argument("--seconds", type=float, default=3.0)
    sd.add_argument("--per-flow", type=int, default=4)
    sd.add_argument("--size", type=int, default=200)
    a = ap.parse_args(argv)
    if a.mode == "recv":
        out = recv(a.port, a.seconds, a.idle)
    else:
        if a.per_flow < 1 or a.size < 0 or a.seconds <= 0:
            ap.error("--per-flow must be >= 1, --size >= 0, --seconds > 0")
        out = send(a.host, a.port, a.seconds, a.per_flow, a.size)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
