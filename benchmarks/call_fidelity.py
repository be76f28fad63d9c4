"""The call scenarios with each call engine: aiortc fixed, aiortc adaptive, Chromium (root;
docs/calls.md "Fidelity across engines").

    python benchmarks/call_fidelity.py [--only NAME ...] [--engines aiortc-fixed chromium ...]
                                       [--json FILE] [--keep DIR] [--slow-setup 3]

For each scenario in ``SCENARIOS`` and each engine, a variant is written to a temporary
directory with every call switched to that engine (``variant``: only the keys that pick the
WebRTC stack and its audio encoder change; the censor, nodes, durations and ``expect:`` stay as
the scenario has them), run with ``testbed run --json``, one after the other (Chromium is CPU
heavy and the machine is shared), and one markdown table is printed: a row per call with
outcome, set-up, MOS, loss, received bitrate, audio gaps / video freezes, path, and the
censor's per-rule counters (the mechanism), plus how many of the scenario's own expectations
the variant met. Those expectations were written for one engine: a variant may legitimately
fail them, so they are reported, never part of this benchmark's verdict (exit 0 unless a
variant could not be run at all).

A Chromium variant with a set-up over ``--slow-setup`` seconds (default 3) looks load-starved (a
browser takes seconds of CPU to start, and its ICE checks compete with it): it is run once more
and both rows are printed. Each row carries the load average at its start and the CPU
(user+sys) its ``testbed run`` and all the processes it reaped used (rough: a browser's helper
processes that a zygote never reaps are missed; docs/calls.md "Cost" measures CPU properly).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from testbed.errors import ScenarioError  # noqa: E402
from testbed.scenario.loader import load_scenario  # noqa: E402

SCENARIOS = (
    "call-delay-jitter",
    "call-bursty-loss",
    "call-throttled",
    "call-throttled-24k",
    "stun-block-lifted",
    "udp-blocked-turn-tls-443",
)

# libwebrtc's Opus start bitrate (docs/calls.md "Adaptive audio"): what an adaptive aiortc call
# starts at when neither the scenario nor a profile names one, as the scenarios' own adaptive calls do.
ADAPTIVE_START = "32kbit"

# Profiles whose STUN signature only aiortc can send (call_schema._AIORTC_ONLY_PROFILES) and whose
# Opus parameters are an app's, not aiortc's own.
APP_PROFILES = ("whatsapp", "telegram")


class Engine(str, Enum):
    AIORTC_FIXED = "aiortc-fixed"
    """aiortc's own encoder: Opus at its 96 kbit/s default, 20 ms, no adaptation."""
    AIORTC_ADAPTIVE = "aiortc-adaptive"
    """aiortc with ``adapt: true`` (the profile's Opus if the call has one, else from 32 kbit/s)."""
    CHROMIUM = "chromium"
    """Headless Chromium (libwebrtc) at both ends: its own congestion control and Opus."""


def variant(scenario: dict[str, Any], engine: Engine) -> tuple[dict[str, Any], list[str]]:
    """The scenario (parsed YAML) with every call switched to ``engine``, and notes on what had
    to change beyond the engine keys. Pure: ``scenario`` is not modified."""
    out = copy.deepcopy(scenario)
    out["name"] = f"{scenario.get('name', 'scenario')}-{engine.value}"
    notes: list[str] = []
    for call in out.get("calls") or []:
        name = call.get("name", "?")
        call.pop("engine", None)
        audio = call.get("audio")
        if isinstance(audio, dict) and engine is not Engine.AIORTC_ADAPTIVE:
            audio.pop("bitrate", None)  # fixed: aiortc's default; chromium: its own (GCC)
            if not audio:
                del call["audio"]
                audio = None
        media = call.get("media")
        has_opus = (media is None or "audio" in media) and _codec(audio) == "opus"
        profile = call.get("profile")
        if profile in APP_PROFILES and engine is not Engine.AIORTC_ADAPTIVE:
            # Fixed: aiortc's own encoder, not the app's. Chromium: refused (the signature is sent
            # from aiortc's TURN allocation socket). The profile's relay-only default is kept.
            del call["profile"]
            ice = call.setdefault("ice", {})
            ice.setdefault("policy", "relay")
            notes.append(f"{name}: profile {profile} dropped (its Opus is the app's; chromium refuses it)")
        if engine is Engine.CHROMIUM:
            call["engine"] = "chromium"
            call.pop("adapt", None)  # libwebrtc always adapts (congestion control), at its own rates
            ice = call.get("ice")
            if isinstance(ice, dict) and ice.pop("restart", None):
                notes.append(f"{name}: ice.restart dropped (aiortc only)")
        elif engine is Engine.AIORTC_FIXED:
            if has_opus:
                call["adapt"] = False
            else:
                call.pop("adapt", None)
        elif has_opus:
            call["adapt"] = True
            if call.get("profile") not in APP_PROFILES and not (isinstance(audio, dict) and "bitrate" in audio):
                call["audio"] = {**(audio if isinstance(audio, dict) else {}), "bitrate": ADAPTIVE_START}
    return out, notes


def _codec(audio: Any) -> str:
    if audio is None:
        return "opus"
    if isinstance(audio, str):
        return audio
    return str(audio.get("codec", "opus"))


def write_variant(source: Path, engine: Engine, directory: Path) -> tuple[Path, list[str]]:
    """Write the variant of scenario file ``source`` into ``directory``; raises ScenarioError if
    testbed would refuse it (checked with the real loader)."""
    data = yaml.safe_load(source.read_text())
    new, notes = variant(data, engine)
    path = directory / f"{source.stem}.{engine.value}.yaml"
    path.write_text(yaml.safe_dump(new, sort_keys=False))
    load_scenario(path)
    return path, notes


@dataclass
class Row:
    scenario: str
    engine: str
    call: str
    outcome: str
    setup_ms: float | None = None
    mos: float | None = None
    loss_pct: float | None = None
    bitrate_kbps: float | None = None
    """Received audio bitrate (payload over the media time), mean of both ends."""
    sent_kbps: float | None = None
    """Sent audio bitrate (payload, what the encoder produced), mean of both ends."""
    gaps: str = ""
    path: str = ""
    censor: str = ""
    expect: str = ""
    failed_expectations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load: float = 0.0
    cpu_s: float | None = None
    attempt: int = 1


def _rules(censor: dict[str, Any] | None) -> str:
    parts = []
    for rule in (censor or {}).get("rules") or []:
        bits = [f"{rule.get('matched_flows', 0)} flow"]
        for key in ("dropped", "delayed", "rejected"):
            if rule.get(key):
                bits.append(f"{key} {rule[key]}")
        causes = rule.get("drops") or {}
        if causes and set(causes) != {"drop"}:
            bits.append("(" + ", ".join(f"{c} {n}" for c, n in causes.items()) + ")")
        parts.append(f"{rule['name']}: " + " ".join(bits))
    return "; ".join(parts)


def _gaps(call: dict[str, Any]) -> str:
    quality = call.get("quality") or {}
    freezes = [q["freezes"] for q in quality.values() if q.get("freezes") is not None]
    longest = [
        s["audio_gap_max_ms"]
        for s in call.get("streams") or []
        if s.get("direction") == "recv" and s.get("audio_gap_max_ms") is not None
    ]
    total = [q["audio_gap_ms"] for q in quality.values() if q.get("audio_gap_ms") is not None]
    out = []
    if total:
        out.append(f"audio gaps {max(total) / 1000:.1f} s (longest {max(longest, default=0) / 1000:.2f} s)")
    if freezes:
        out.append(f"{sum(freezes)} video freezes")
    return ", ".join(out)


def rows_from_result(result: dict[str, Any], scenario: str, engine: Engine, notes: list[str]) -> list[Row]:
    s = result["scenarios"][0]
    checks = s.get("expectations") or []
    failed = [c["what"] for c in checks if not c.get("passed")]
    expect = f"{len(checks) - len(failed)}/{len(checks)}"
    censor = _rules(s.get("censor"))
    if s.get("error") and not s.get("calls"):
        return [Row(scenario, engine.value, "-", f"error: {s['error']}", expect=expect, notes=notes)]
    rows = []
    for call in s.get("calls") or []:
        # Both from the audio streams' payload bytes over the media time, so sent and received
        # compare (the result's quality.bitrate_kbps adds the data channel's).
        media_s = call.get("media_s") or 0.0
        audio = [st for st in call.get("streams") or [] if st.get("kind") == "audio" and st.get("bytes") is not None]
        sent = [st["bytes"] * 8 / media_s / 1000 for st in audio if st.get("direction") == "send" and media_s]
        rates = [st["bytes"] * 8 / media_s / 1000 for st in audio if st.get("direction") == "recv" and media_s]
        row = Row(
            scenario,
            engine.value,
            call["name"],
            call.get("outcome") or "?",
            setup_ms=call.get("setup_ms"),
            mos=call.get("mos"),
            loss_pct=call.get("loss_pct"),
            bitrate_kbps=statistics.fmean(rates) if rates else None,
            sent_kbps=statistics.fmean(sent) if sent else None,
            gaps=_gaps(call),
            path=f"{call.get('candidate_type')}/{call.get('candidate_transport')}" if call.get("connected") else "",
            censor=censor,
            expect=expect,
            failed_expectations=failed,
            notes=list(notes),
        )
        if call.get("error"):
            row.notes.append(str(call["error"]).splitlines()[0][:160])
        rows.append(row)
    return rows


def run_variant(
    path: Path, scenario: str, engine: Engine, notes: list[str], workdir: Path, attempt: int = 1
) -> list[Row]:
    out = workdir / f"{path.stem}.{attempt}.json"
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "run", "-q", str(path), "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not out.exists():
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return [Row(scenario, engine.value, "-", f"not run: {why}", notes=notes, load=load, cpu_s=cpu)]
    rows = rows_from_result(json.loads(out.read_text()), scenario, engine, notes)
    for row in rows:
        row.load, row.cpu_s = load, cpu
    return rows


def _f(value: float | None, fmt: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{unit}"


def _setup(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def table(rows: list[Row]) -> str:
    head = (
        "| scenario | engine | call | outcome | setup | MOS | loss | audio kbit/s sent / recv | audio gaps / freezes | path "
        "| censor rules | scenario's expect | load | run CPU |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        attempt = f" (run {r.attempt})" if r.attempt > 1 else ""
        lines.append(
            f"| {r.scenario} | {r.engine}{attempt} | {r.call} | {r.outcome} | {_setup(r.setup_ms)} "
            f"| {_f(r.mos, '.2f')} | {_f(r.loss_pct, '.1f', ' %')} | {_f(r.sent_kbps, '.0f')} / {_f(r.bitrate_kbps, '.0f')} "
            f"| {r.gaps or '—'} | {r.path or '—'} | {r.censor or '—'} | {r.expect or '—'} | {r.load:.1f} "
            f"| {_f(r.cpu_s, '.0f', ' s')} |"
        )
    notes: dict[str, None] = {}
    for r in rows:
        for n in r.notes:
            notes[f"{r.scenario} / {r.engine}: {n}"] = None
        for w in r.failed_expectations:
            notes[f"{r.scenario} / {r.engine}: expectation not met: {w}"] = None
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=SCENARIOS, help="only these scenarios")
    ap.add_argument("--engines", nargs="+", metavar="ENGINE", choices=[e.value for e in Engine])
    ap.add_argument("--json", metavar="FILE", type=Path, help="also write the rows as JSON")
    ap.add_argument("--keep", metavar="DIR", type=Path, help="write the variants and their results here (kept)")
    ap.add_argument(
        "--slow-setup",
        type=float,
        default=3.0,
        metavar="S",
        help="re-run a chromium variant once if a call's set-up took over S seconds (default 3)",
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("call_fidelity: run as root (testbed run creates namespaces)", file=sys.stderr)
        return 2
    engines = [Engine(e) for e in args.engines] if args.engines else list(Engine)
    started = time.time()
    print(f"# start: {os.popen('uptime').read().strip()}", file=sys.stderr)
    rows: list[Row] = []
    broken = 0
    with tempfile.TemporaryDirectory(prefix="testbed-fidelity-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.only or SCENARIOS:
            for engine in engines:
                try:
                    path, notes = write_variant(REPO / "scenarios" / f"{name}.yaml", engine, workdir)
                except ScenarioError as exc:
                    rows.append(Row(name, engine.value, "-", f"refused: {exc}"))
                    continue
                print(f"# {name} / {engine.value} ...", file=sys.stderr, flush=True)
                got = run_variant(path, name, engine, notes, workdir)
                broken += any(r.outcome.startswith(("not run", "error")) for r in got)
                setups = [r.setup_ms for r in got if r.setup_ms is not None]
                if engine is Engine.CHROMIUM and setups and max(setups) > args.slow_setup * 1000:
                    print(f"# {name} / chromium: set-up {max(setups):.0f} ms, running again", file=sys.stderr)
                    again = run_variant(path, name, engine, notes, workdir, attempt=2)
                    for r in again:
                        r.attempt = 2
                    got += again
                rows.extend(got)
    print(table(rows))
    print(f"\n{len(rows)} rows in {time.time() - started:.0f} s; end: {os.popen('uptime').read().strip()}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
