"""N concurrent aiortc audio calls through an accept-all censor (root; docs/performance.md "Calls").

    python benchmarks/call_scale.py --calls 10,20,30 [--seconds 20] [--baseline]

For each N it writes a scenario like ``scenarios/ten-calls.yaml`` with ``count: N`` (all calls
placed at once, audio only, the NFQUEUE censor inspecting every packet and blocking nothing),
runs it with ``testbed run --json`` and prints, from the results:

* outcomes (how many ``ok``), and audio frames sent / due over all send streams (due: what the
  tone's clock owed by hang-up, so ``1 - sent/due`` is the share never sent);
* CPU per call start: median over calls of both endpoints' CPU when their first frame went out
  (each endpoint reports it: interpreter, imports, ICE, DTLS), plus the run's shared start-up
  CPU per call (the zygote that imported aiortc once, the forkclients; sampled from /proc);
* CPU per call-second: both endpoints' CPU after that, per second of media (steady state);
* setup median, and the machine's busy share during the run (/proc/stat) with the load average
  before it (the machine may be shared: read figures beside the load).

``--baseline`` also runs each N with endpoints as they were before docs/performance.md "Calls"
(``TESTBED_LIVE_OPUS=1``: the tone encoded and received audio decoded per frame;
``TESTBED_CALLS_ZYGOTE=0``: each endpoint process imports aiortc itself), alternating, so the
two are compared on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = """\
name: call-scale-{n}
description: {n} concurrent audio calls through an accept-all censor (benchmarks/call_scale.py).
calls:
  - name: call
    count: {n}
    duration: {seconds}s
    media: [audio]
    connect_timeout: 60s
expect:
  - {{call: call, outcome: ok}}
"""


TICK = os.sysconf("SC_CLK_TCK")
SHARED = ("testbed.calls.zygote", "testbed.calls.forkclient", "calls/forkclient.py")


class SharedCpu:
    """CPU of the processes that an endpoint's own figure leaves out: the zygote (aiortc's import,
    paid once per run) and each endpoint's forkclient (a small interpreter that waits), sampled
    from /proc every 0.1 s."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                    if not any(name.encode() in cmdline for name in SHARED):
                        continue
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    # The zygote's forked endpoints keep its command line: they report their own CPU.
                    if b"testbed.calls.zygote" in Path(f"/proc/{fields[1]}/cmdline").read_bytes():
                        continue
                except OSError:
                    continue
                self._seen[(int(entry), fields[19])] = (int(fields[11]) + int(fields[12])) / TICK

    def __enter__(self) -> SharedCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> float:
        return sum(self._seen.values())


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def calls_of(doc: object) -> list[dict[str, object]]:
    """Every call result in a ``testbed run --json`` document."""
    found: list[dict[str, object]] = []
    if isinstance(doc, dict):
        if "streams" in doc and "setup_ms" in doc:
            return [doc]
        for value in doc.values():
            found += calls_of(value)
    elif isinstance(doc, list):
        for value in doc:
            found += calls_of(value)
    return found


def run(n: int, seconds: float, live: bool, workdir: Path) -> str:
    scenario = workdir / f"call-scale-{n}.yaml"
    scenario.write_text(SCENARIO.format(n=n, seconds=seconds))
    out = workdir / f"call-scale-{n}.json"
    env = dict(os.environ)
    if live:
        env["TESTBED_LIVE_OPUS"] = "1"
        env["TESTBED_CALLS_ZYGOTE"] = "0"
    load = os.getloadavg()
    busy0, total0 = cpu_busy()
    started = time.monotonic()
    with SharedCpu() as shared:
        proc = subprocess.run(
            [sys.executable, "-m", "testbed.cli", "run", str(scenario), "--json", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
    wall = time.monotonic() - started
    busy1, total1 = cpu_busy()
    if not out.exists():
        return f"calls={n}: testbed run failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
    doc = json.loads(out.read_text())
    calls = calls_of(doc)
    if not calls:
        errors = [s.get("error") for s in doc.get("scenarios", []) if isinstance(s, dict)]
        return f"calls={n}: no call results (exit {proc.returncode}): {errors}"
    outcomes = [str(c.get("outcome")) for c in calls]
    sent = due = 0
    for call in calls:
        for stream in call["streams"]:  # type: ignore[attr-defined]
            if stream["kind"] == "audio" and stream["direction"] == "send":
                sent += stream["frames"] or 0
                due += stream["frames_due"] or 0
    starts: list[float] = []
    steady = media = 0.0
    for call in calls:
        cpu = call.get("cpu_s") or {}
        at_media = [v["at_media"] for v in cpu.values() if v.get("at_media") is not None]  # type: ignore[union-attr]
        if len(at_media) == 2:
            starts.append(sum(at_media))
            steady += sum(v["total"] - v["at_media"] for v in cpu.values())  # type: ignore[union-attr]
            media += float(call.get("media_s") or 0.0)  # type: ignore[arg-type]
    # The zygote and the forkclients are start-up cost shared by the run's calls.
    overhead = shared.total / len(calls)
    setups = [float(c["setup_ms"]) for c in calls if c.get("setup_ms") is not None]  # type: ignore[arg-type]
    nan = float("nan")
    return (
        f"calls={n:2} {'baseline' if live else 'now     '} media={seconds:.0f}s "
        f"ok={outcomes.count('ok')}/{len(calls)} other={sorted(o for o in outcomes if o != 'ok')} "
        f"frames sent/due={sent}/{due} ({100 * (1 - sent / due) if due else nan:.2f}% unsent) "
        f"cpu/call-start={statistics.median(starts) + overhead if starts else nan:.3f}s "
        f"(endpoints {statistics.median(starts) if starts else nan:.3f} + shared {overhead:.3f}) "
        f"cpu/call-s={steady / media if media else nan:.3f}s "
        f"setup_med={statistics.median(setups) if setups else nan:.0f}ms "
        f"machine_busy={100 * (busy1 - busy0) / (total1 - total0):.0f}% wall={wall:.0f}s "
        f"load_before={load[0]:.1f},{load[1]:.1f} exit={proc.returncode}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="10,20,30", help="comma-separated call counts (default 10,20,30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="media seconds per call (default 20)")
    parser.add_argument("--baseline", action="store_true", help="also run each N as endpoints were before")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("call_scale.py: run as root (scenarios create network namespaces)")
    counts = [int(x) for x in args.calls.split(",") if x.strip()]
    print(f"# {os.cpu_count()} CPUs; uptime: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tb-callscale-") as tmp:
        for n in counts:
            for live in (False, True) if args.baseline else (False,):
                print(run(n, args.seconds, live, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
