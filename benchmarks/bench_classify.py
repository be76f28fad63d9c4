"""Classify throughput (packets/s), one core: the shared captures, a synthetic long call, and
a capture of many one-packet flows streamed out as `testbed classify --jsonl` does.

    .venv/bin/python benchmarks/bench_classify.py [--packets N] [--flows N]

Not a timed test: numbers depend on the machine. What it shows is the design rule of
core/classify/: after a flow's first few packets the per-packet cost is a flow-table lookup
and counters. The capture is read into memory first, so the figure is the classifier's
(link-layer strip + parse_ip + observe), not the disk's. The many-flows line prints the
process's peak RSS too: it stays at the flow table's size (65536 flows) however many flows.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.analysis.classify import flow_to_json, stream_flows  # noqa: E402
from testbed.analysis.pcap import read_capture, strip_link_layer  # noqa: E402
from testbed.core.classify import Classifier  # noqa: E402
from testbed.core.flow import Flow  # noqa: E402
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


def _discard(flow: Flow) -> None:
    pass


def many_flows(path: Path, flows: int) -> None:
    """``flows`` single-packet UDP flows 1 ms apart (a scan, or a DNS-heavy capture)."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i in range(flows):
            src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
            udp = struct.pack("!HHHH", 40000 + i % 10000, 5000, 12, 0) + b"abcd"
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 0, 0, 64, 17, 0, src, b"\xc6\x12\x00\x01") + udp
            fh.write(struct.pack("<IIII", i // 1000, (i % 1000) * 1000, len(ip), len(ip)) + ip)


def bench_many_flows(flows: int) -> None:
    """`testbed classify --jsonl` on many one-packet flows: flows/s, and the peak RSS, which
    stays at the flow table's size however many flows the capture has."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.pcap"
        many_flows(path, flows)
        n = 0

        def emit(flow: Flow) -> None:
            nonlocal n
            n += 1
            json.dumps(flow_to_json(flow), separators=(",", ":"))

        t0 = time.perf_counter()
        stream_flows(str(path), emit)
        secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"many flows:      {n} one-packet flows in {secs:.3f} s = {n / secs:,.0f} flows/s"
        f" (--jsonl), peak RSS {rss:.0f} MB"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000, help="synthetic call length")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--flows", type=int, default=300_000, help="one-packet flows for the streaming line")
    args = ap.parse_args()
    # First, so the process's peak RSS is this run's and not the frame lists' below.
    bench_many_flows(args.flows)
    if SHARED.is_dir():
        frames: list[tuple[float, int, bytes]] = []
        for p in sorted(SHARED.glob("*.pcap*")):
            if p.name.endswith(".ndpi.out"):
                continue
            frames.extend((r.timestamp, r.linktype, r.data) for r in read_capture(str(p)))
        n, secs = _run(frames, args.repeat)
        print(f"shared captures: {n} packets in {secs:.3f} s = {n / secs:,.0f} packets/s")
        # end to end as `testbed classify` runs: reading the files too, flows streamed out
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            total = 0
            for p in sorted(SHARED.glob("*.pcap*")):
                if not p.name.endswith(".ndpi.out"):
                    total += stream_flows(str(p), _discard).ip_packets
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
