"""CPU per call-second of each call engine, and N concurrent calls (root; docs/calls.md "Engines").

    python benchmarks/call_engines.py cost   [--seconds 5 20] [--video]
    python benchmarks/call_engines.py load   --engine chromium --calls 1 2 4 [--video]

Calls run between two fresh namespaces joined by a veth pair (198.18.250.0/30, no censor).
CPU is the user+sys time of every process inside the two namespaces (endpoints, browsers and
all of a browser's helper processes, which RUSAGE_CHILDREN would miss: a browser does not
always reap its zygote's children), sampled from /proc every 0.2 s per process (the last
< 0.2 s of each process is missed).  The machine is shared, so read the figures as rough.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from _calls_fixtures import namespace_pair

from testbed.calls import CallOptions, judged, run_call
from testbed.calls.engine import Engine
from testbed.calls.signalling import Role

TICK = os.sysconf("SC_CLK_TCK")


class NamespaceCpu:
    """Sum of user+sys CPU of every process ever seen in the given network namespaces."""

    def __init__(self, names: list[str]) -> None:
        self._inodes = {os.stat(f"/run/netns/{n}").st_ino for n in names}
        self._seen: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino not in self._inodes:
                    continue
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            start = fields[19]  # pid + start time: a reused pid is another process
            self._seen[(int(entry), start)] = (int(fields[11]) + int(fields[12])) / TICK

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> float:
        return sum(self._seen.values())


async def _calls(
    engine: Engine, n: int, seconds: float, video: bool, a: str, b: str, workdir: Path
) -> list[dict[str, object]]:
    engines = {Role.CALLER: engine, Role.CALLEE: engine}
    results = await asyncio.gather(
        *(
            run_call(
                CallOptions(
                    name=f"c{i}",
                    duration_s=seconds,
                    audio=True,
                    video=video,
                    data_channel=False,
                    connect_timeout_s=60.0,
                ),
                caller_netns=a,
                callee_netns=b,
                workdir=workdir,
                engines=engines,
                start_timeout_s=120.0,
            )
            for i in range(n)
        )
    )
    out = []
    for r in results:
        r = judged(r)
        recv = [s for s in r.streams if s.kind == "audio" and s.direction == "recv"]
        ratio = [s.packets_received / s.packets_sent for s in recv if s.packets_sent and s.packets_received is not None]
        gap = max((s.audio_gap_max_ms or 0.0 for s in r.streams), default=None)
        out.append(
            {
                "outcome": r.outcome,
                "setup_ms": r.setup_ms,
                "mos": r.mos,
                "media_s": r.media_s,
                "audio_rx_ratio": min(ratio) if ratio else None,
                "gap_ms": gap,
                "jitter_ms": r.jitter_ms,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cost", "load"])
    parser.add_argument("--engine", choices=[e.value for e in Engine], default="chromium")
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1])
    parser.add_argument("--video", action="store_true")
    args = parser.parse_args()
    engines = [Engine(args.engine)] if args.mode == "load" else list(Engine)
    with namespace_pair() as pair, tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        for engine in engines:
            for n in args.calls:
                for seconds in args.seconds:
                    wall = time.monotonic()
                    with NamespaceCpu([pair.a, pair.b]) as meter:
                        rows = asyncio.run(_calls(engine, n, seconds, args.video, pair.a, pair.b, Path(tmp)))
                    cpu, wall = meter.total, time.monotonic() - wall
                    media = sum(float(r["media_s"] or 0) for r in rows)
                    setups = [float(r["setup_ms"]) for r in rows if r["setup_ms"] is not None]
                    mos = [float(str(r["mos"])) for r in rows if r["mos"] is not None]
                    rx = [float(str(r["audio_rx_ratio"])) for r in rows if r["audio_rx_ratio"] is not None]
                    gaps = [float(str(r["gap_ms"])) for r in rows if r["gap_ms"] is not None]
                    nan = float("nan")
                    print(
                        f"{engine.value:8} video={args.video!s:5} calls={n:2} media={seconds:4.0f}s "
                        f"cpu={cpu:6.1f}s cpu/call-s={cpu / media if media else nan:.3f} "
                        f"machine={cpu / wall / 2 * 100:4.0f}% wall={wall:5.1f}s "
                        f"setup_med={statistics.median(setups) if setups else nan:.0f}ms "
                        f"outcomes={[r['outcome'] for r in rows]} mos_min={min(mos, default=nan):.2f} "
                        f"rx_min={min(rx, default=nan):.2f} gap_max={max(gaps, default=nan):.0f}ms",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
