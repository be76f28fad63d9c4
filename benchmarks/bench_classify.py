"""Classify throughput (packets/s), one core: the shared captures, a synthetic long call, and
a capture of many one-packet flows streamed out as `testbed classify --jsonl` does; and
`testbed classify` against nDPI's ndpiReader on one large capture (``--vs-ndpi``).

    .venv/bin/python benchmarks/bench_classify.py [--packets N] [--flows N]
    .venv/bin/python benchmarks/bench_classify.py --vs-ndpi [--big-packets 150000] [--repeat 3]
    .venv/bin/python benchmarks/bench_classify.py --write-big FILE   # only build the capture

The large capture is built here, not stored: the captures in ../shared/pcaps (nDPI's test
captures) replicated until ~150k packets, each copy with its IP addresses shifted (so every
copy is a new set of flows; IPv4 header checksums recomputed) and its timestamps laid after the
previous copy's (gaps inside a capture kept, but at most 1 s, so a capture's odd clock does
not span years). ndpiReader (Debian libndpi-bin) runs as ``ndpiReader -q -i FILE``; its
column is skipped with a message when it is not installed.

Not a timed test: numbers depend on the machine. What it shows is the design rule of
core/classify/: after a flow's first few packets the per-packet cost is a flow-table lookup
and counters. The capture is read into memory first, so the figure is the classifier's
(link-layer strip + parse_ip + observe), not the disk's. The many-flows line prints the
process's peak RSS too: it stays at the flow table's size (65536 flows) however many flows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import struct
import subprocess
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


def _shift_ip(ip: bytearray, copy: int) -> None:
    """Move both addresses of an IP packet (in place) to copy ``copy``'s own range: the third
    byte of an IPv4 address, the 14th of an IPv6 one (a /112 each); checksums stay valid for
    IPv4 (the header's is recomputed; TCP/UDP ones are not checked by either tool)."""
    version = ip[0] >> 4
    if version == 4 and len(ip) >= 20:
        for off in (14, 18):
            ip[off] = (ip[off] + copy) & 0xFF
        ihl = (ip[0] & 0x0F) * 4
        ip[10:12] = b"\x00\x00"
        words = struct.unpack(f"!{ihl // 2}H", bytes(ip[:ihl]))
        total = sum(words)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        ip[10:12] = struct.pack("!H", ~total & 0xFFFF)
    elif version == 6 and len(ip) >= 40:
        for off in (8 + 13, 24 + 13):
            ip[off] = (ip[off] + copy) & 0xFF


def build_big_capture(path: Path, packets: int = 150_000, shared: Path = SHARED) -> int:
    """Write the large capture (pcap, Ethernet) to ``path``; returns its packet count."""
    base: list[tuple[float, bytes, int]] = []  # (time since the previous packet, frame, IP offset)
    for p in sorted(shared.glob("*.pcap*")):
        if p.name.endswith(".ndpi.out"):
            continue
        last = None
        for r in read_capture(str(p)):
            ip = strip_link_layer(r.linktype, r.data)
            if r.linktype != 1 or ip is None:
                continue
            gap = 0.0 if last is None else min(max(r.timestamp - last, 0.0), 1.0)
            last = r.timestamp
            base.append((gap, r.data, len(r.data) - len(ip)))
    if not base:
        raise SystemExit(f"no captures in {shared}")
    t = 1_700_000_000.0
    n = 0
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        copy = 0
        while n < packets:
            for gap, frame, off in base:
                t += gap
                data = bytearray(frame)
                ip = data[off:]
                _shift_ip(ip, copy)
                data[off:] = ip
                sec = int(t)
                fh.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(data), len(data)))
                fh.write(data)
                n += 1
                if n >= packets:
                    break
            t += 1.0
            copy += 1
    return n


def _timed(cmd: list[str], repeat: int) -> tuple[float, float, str]:
    """Best wall time and the CPU time (user+sys of the child) of that run, and its stdout."""
    best = (float("inf"), 0.0, "")
    for _ in range(repeat):
        before = os.times()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if wall < best[0]:
            best = (wall, cpu, out)
    return best


def vs_ndpi(packets: int, repeat: int) -> None:
    """`testbed classify` in each output mode against ``ndpiReader -q -i`` on one capture."""
    testbed = str(REPO / ".venv" / "bin" / "testbed")
    if not Path(testbed).exists():
        testbed = shutil.which("testbed") or "testbed"
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        big = Path(tmp) / "big.pcap"
        n = build_big_capture(big, packets)
        print(f"capture: {n} packets, {big.stat().st_size / 1e6:.1f} MB (built from {SHARED})")
        rows: list[tuple[str, float, float]] = []
        ndpi = shutil.which("ndpiReader")
        if ndpi is None:
            print("ndpiReader: not installed (apt-get install libndpi-bin): its column is skipped")
        else:
            wall, cpu, _ = _timed([ndpi, "-q", "-i", str(big)], repeat)
            rows.append(("ndpiReader -q -i", wall, cpu))
        for label, extra in (
            ("testbed classify (table)", []),
            ("testbed classify --json", ["--json"]),
            ("testbed classify --jsonl", ["--jsonl"]),
            ("testbed classify --count", ["--count"]),
        ):
            wall, cpu, _ = _timed([testbed, "classify", str(big), *extra], repeat)
            rows.append((label, wall, cpu))
    ref = rows[0][1] if ndpi is not None else None
    print(f"| tool | wall s (best of {repeat}) | CPU s | packets/s | / ndpiReader wall |")
    print("|---|---|---|---|---|")
    for label, wall, cpu in rows:
        ratio = f"{wall / ref:.2f}x" if ref else "-"
        print(f"| {label} | {wall:.3f} | {cpu:.3f} | {n / wall:,.0f} | {ratio} |")
    # In-process rate without start-up or output: what --count measures minus interpreter start.
    t0 = time.perf_counter()
    total = 0
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        big = Path(tmp) / "big.pcap"
        build_big_capture(big, packets)
        t0 = time.perf_counter()
        total = stream_flows(str(big), _discard).ip_packets
        secs = time.perf_counter() - t0
    print(f"in process (read + classify, no output, no start-up): {total / secs:,.0f} packets/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000, help="synthetic call length")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--flows", type=int, default=300_000, help="one-packet flows for the streaming line")
    ap.add_argument("--vs-ndpi", action="store_true", help="only the large-capture comparison with ndpiReader")
    ap.add_argument("--big-packets", type=int, default=150_000, help="size of the large capture")
    ap.add_argument("--write-big", metavar="FILE", help="only write the large capture to FILE")
    args = ap.parse_args()
    if args.write_big:
        print(f"{build_big_capture(Path(args.write_big), args.big_packets)} packets written to {args.write_big}")
        return 0
    if args.vs_ndpi:
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        vs_ndpi(args.big_packets, args.repeat)
        return 0
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
