"""Sequence-numbered UDP: ``python -m testbed.tools.udpseq send|recv ...``.

    recv PORT [--bind ADDR] [--count N] [--idle S] [--timeout S]
        prints {"ready": PORT} once bound, then one JSON summary when it stops: after N
        datagrams, after S seconds without one (once the first arrived), at --timeout, or on
        SIGTERM/SIGINT.
    send HOST PORT [--count N] [--rate PPS] [--size BYTES] [--src-port P]
        sends N datagrams of BYTES of UDP payload at PPS (0: as fast as possible), paced on a
        monotonic schedule (late packets are sent at once, never skipped); prints a JSON summary.

Each datagram starts with ``b"UDSQ"``, a 4-byte sequence number (0-based) and the sender's
monotonic send time in ns; the rest is padding. The receiver ignores anything else. IP-level
sizes assume IPv4 without options (20 + 8 bytes of headers), as the censor counts them.

The analysis (which sequence numbers are missing, loss runs, rates) is in pure functions so it
is unit-tested without sockets.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.records.json import JsonObject

MAGIC = b"UDSQ"
HEADER = struct.Struct("!4sIQ")
MIN_SIZE = HEADER.size  # 16
IPV4_UDP_OVERHEAD = 28


def encode(seq: int, sent_ns: int, size: int) -> bytes:
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} bytes")
    return HEADER.pack(MAGIC, seq, sent_ns) + b"\0" * (size - MIN_SIZE)


def decode(data: bytes) -> tuple[int, int] | None:
    """(seq, sent_ns), or None for a datagram that is not ours."""
    if len(data) < MIN_SIZE:
        return None
    magic, seq, sent_ns = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None
    return seq, sent_ns


def loss_runs(received: Iterable[int], expected: int) -> list[int]:
    """Lengths of the runs of consecutive missing sequence numbers in ``0..expected-1``, in order."""
    got = set(received)
    runs: list[int] = []
    run = 0
    for seq in range(expected):
        if seq in got:
            if run:
                runs.append(run)
                run = 0
        else:
            run += 1
    if run:
        runs.append(run)
    return runs


@dataclass(slots=True)
class Receiver:
    """What arrived: sequence numbers in arrival order, with arrival times (s) and sizes."""

    seqs: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    foreign: int = 0

    def add(self, data: bytes, now: float) -> bool:
        got = decode(data)
        if got is None:
            self.foreign += 1
            return False
        self.seqs.append(got[0])
        self.times.append(now)
        self.sizes.append(len(data))
        return True

    def summary(self, expected: int | None = None) -> JsonObject:
        return summarize(self.seqs, self.times, self.sizes, expected, foreign=self.foreign)


def summarize(
    seqs: Sequence[int],
    times: Sequence[float],
    sizes: Sequence[int],
    expected: int | None = None,
    *,
    foreign: int = 0,
) -> JsonObject:
    """The receiver's report. ``expected`` (how many were sent) defaults to the highest sequence
    number seen + 1, which cannot see losses at the tail."""
    unique = set(seqs)
    n_expected = expected if expected is not None else (max(unique) + 1 if unique else 0)
    runs = loss_runs(unique, n_expected)
    reordered = 0
    high = -1
    for s in seqs:
        if s < high:
            reordered += 1
        else:
            high = s
    payload = sum(sizes)
    ip_bytes = payload + IPV4_UDP_OVERHEAD * len(sizes)
    span = (times[-1] - times[0]) if len(times) >= 2 else 0.0
    # Rate over the span between first and last arrival: n-1 inter-arrival gaps carry the bytes
    # of all packets but the first.
    rate_ip = (ip_bytes - (sizes[0] + IPV4_UDP_OVERHEAD)) * 8 / span if span > 0 else 0.0
    lost = n_expected - len(unique & set(range(n_expected)))
    return {
        "received": len(seqs),
        "unique": len(unique),
        "duplicates": len(seqs) - len(unique),
        "reordered": reordered,
        "expected": n_expected,
        "lost": lost,
        "loss_rate": lost / n_expected if n_expected else 0.0,
        "loss_runs": len(runs),
        "mean_loss_run": sum(runs) / len(runs) if runs else 0.0,
        "max_loss_run": max(runs) if runs else 0,
        "run_lengths": _histogram(runs),
        "first_seq": seqs[0] if seqs else None,
        "last_seq": seqs[-1] if seqs else None,
        "max_seq": max(unique) if unique else None,
        "payload_bytes": payload,
        "ip_bytes": ip_bytes,
        "span_s": span,
        "rate_ip_bps": rate_ip,
        "foreign": foreign,
    }


def _histogram(runs: Iterable[int]) -> dict[str, int]:
    h: dict[int, int] = {}
    for r in runs:
        h[r] = h.get(r, 0) + 1
    return {str(k): h[k] for k in sorted(h)}


def schedule(count: int, rate: float, start: float) -> Iterable[float]:
    """Due times of ``count`` packets at ``rate`` per second from ``start`` (all at once if 0)."""
    if rate <= 0:
        for _ in range(count):
            yield start
        return
    gap = 1.0 / rate
    for i in range(count):
        yield start + i * gap


def send(host: str, port: int, *, count: int, rate: float, size: int, src_port: int = 0) -> JsonObject:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if src_port:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", src_port))
        sock.connect((host, port))
        pad = b"\0" * (size - MIN_SIZE)
        pack = HEADER.pack
        clock = time.monotonic
        errors = 0
        start = clock()
        for seq, due in enumerate(schedule(count, rate, start)):
            now = clock()
            if due > now:
                wait = due - now
                if wait > 0.0005:
                    time.sleep(wait - 0.0003)
                while clock() < due:
                    pass
            try:
                sock.send(pack(MAGIC, seq, time.monotonic_ns()) + pad)
            except (BlockingIOError, ConnectionRefusedError, OSError):
                # ICMP errors from earlier packets surface here (ECONNREFUSED): the datagram is
                # still counted as sent, it is the path's business what happened to it.
                errors += 1
        elapsed = clock() - start
        local = sock.getsockname()
    finally:
        sock.close()
    return {
        "sent": count,
        "size": size,
        "ip_size": size + IPV4_UDP_OVERHEAD,
        "rate_pps": rate,
        "duration_s": elapsed,
        "send_errors": errors,
        "src_port": local[1],
    }


def receive(
    port: int,
    *,
    bind: str = "0.0.0.0",
    count: int | None = None,
    idle: float = 1.0,
    timeout: float = 60.0,
    out: Any = None,
    stopped: Callable[[], bool] = lambda: False,
) -> JsonObject:
    """Receive until ``count`` datagrams, ``idle`` seconds of silence after the first one,
    ``timeout``, or ``stopped()`` (polled every 50 ms); prints the ready line on ``out``."""
    out = out if out is not None else sys.stdout
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    rx = Receiver()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((bind, port))
        sock.settimeout(0.05)
        out.write(json.dumps({"ready": sock.getsockname()[1]}) + "\n")
        out.flush()
        clock = time.monotonic
        deadline = clock() + timeout
        last = None
        while not stopped():
            now = clock()
            if now >= deadline or (last is not None and now - last >= idle):
                break
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            now = clock()
            if rx.add(data, now):
                last = now
                if count is not None and len(rx.seqs) >= count:
                    break
    finally:
        sock.close()
    return rx.summary(count)


def binomial_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95 % for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.tools.udpseq", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv", help="receive and report")
    r.add_argument("port", type=int)
    r.add_argument("--bind", default="0.0.0.0")
    r.add_argument("--count", type=int, default=None, help="how many the sender sends (stop after that many)")
    r.add_argument("--idle", type=float, default=1.0, help="stop this long after the last datagram (s)")
    r.add_argument("--timeout", type=float, default=60.0, help="stop after this long in any case (s)")
    s = sub.add_parser("send", help="send paced datagrams")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--rate", type=float, default=1000.0, help="packets/s; 0 = as fast as possible")
    s.add_argument("--size", type=int, default=100, help=f"UDP payload bytes (>= {MIN_SIZE})")
    s.add_argument("--src-port", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "recv":
        stop: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
        summary = receive(
            args.port,
            bind=args.bind,
            count=args.count,
            idle=args.idle,
            timeout=args.timeout,
            stopped=lambda: bool(stop),
        )
    else:
        if args.size < MIN_SIZE or args.size > 65507:
            ap.error(f"--size must be {MIN_SIZE}..65507")
        if args.count < 0:
            ap.error("--count must be >= 0")
        summary = send(args.host, args.port, count=args.count, rate=args.rate, size=args.size, src_port=args.src_port)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
