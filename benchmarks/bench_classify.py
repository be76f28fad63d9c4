"""Classify throughput (packets/s), one core: the shared captures and a synthetic long call.

    .venv/bin/python benchmarks/bench_classify.py [--packets N]

Not a timed test: numbers depend on the machine. What it shows is the design rule of
core/classify.py: after a flow's first few packets the per-packet cost is a flow-table lookup
and counters. The capture is read into memory first, so the figure is the classifier's
(link-layer strip + parse_ip + observe), not the disk's.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.analysis.pcap import read_capture, strip_link_layer  # noqa: E402
from testbed.core.classify import Classifier  # noqa: E402
from testbed.core.packet import MalformedPacket, parse_ip  # noqa: E402

SHARED = REPO.parent / "shared" / "pcaps"


def _run(frames: list[tuple[float, int, bytes]], repeat: int) -> tuple[int, float]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        c = Classifier()
        observe = c.observe
        t0 = time.perf_counter()
        n = 0
        for ts, lt, data in frames:
            ip = strip_link_layer(lt, data)
            if ip is None:
                continue
            try:
                p = parse_ip(ip)
            except MalformedPacket:
                continue
            observe(p, ts)
            n += 1
        best = min(best, time.perf_counter() - t0)
    return n, best


def synthetic_call(packets: int, seed: int = 1) -> list[tuple[float, int, bytes]]:
    """A 1:1 call through a TURN relay: STUN Binding exchange, then bidirectional SRTP audio and
    video on one 5-tuple at ~50 + ~100 packets/s per direction, plus a few background flows."""
    rng = random.Random(seed)
    a, b = bytes([10, 0, 0, 2]), bytes([203, 0, 113, 7])

    def ip_udp(src: bytes, sp: int, dst: bytes, dp: int, payload: bytes) -> bytes:
        udp = struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst) + udp

    frames: list[tuple[float, int, bytes]] = []
    t = 0.0
    stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, b"\x07" * 12)
    frames.append((t, 101, ip_udp(a, 50000, b, 3478, stun)))
    seq = {0: 0, 1: 0}
    while len(frames) < packets:
        t += 1 / 300
        d = rng.random() < 0.5
        s = 1 if d else 0
        seq[s] = (seq[s] + 1) & 0xFFFF
        rtp = struct.pack("!BBHII", 0x80, 111, seq[s], seq[s] * 960, 0x1234 + s) + rng.randbytes(
            rng.choice((60, 160, 900))
        )
        if d:
            frames.append((t, 101, ip_udp(a, 50000, b, 3478, rtp)))
        else:
            frames.append((t, 101, ip_udp(b, 3478, a, 50000, rtp)))
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000, help="synthetic call length")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if SHARED.is_dir():
        frames = []
        for p in sorted(SHARED.glob("*.pcap*")):
            if p.name.endswith(".ndpi.out"):
                continue
            frames.extend((r.timestamp, r.linktype, r.data) for r in read_capture(str(p)))
        n, secs = _run(frames, args.repeat)
        print(f"shared captures: {n} packets in {secs:.3f} s = {n / secs:,.0f} packets/s")
        # end to end as `testbed classify` runs: reading the files too
        from testbed.analysis.classify import classify_capture

        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            total = 0
            for p in sorted(SHARED.glob("*.pcap*")):
                if not p.name.endswith(".ndpi.out"):
                    total += classify_capture(str(p), Classifier(retain_ended=True)).ip_packets
            best = min(best, time.perf_counter() - t0)
        print(f"shared captures, end to end (file reading included): {total / best:,.0f} packets/s")
    else:
        print(f"shared captures: skipped ({SHARED} not found)")
    frames = synthetic_call(args.packets)
    n, secs = _run(frames, args.repeat)
    print(f"synthetic call:  {n} packets in {secs:.3f} s = {n / secs:,.0f} packets/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
