"""Human-readable summaries of scenario results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from testbed.calls import CallResult
from testbed.runner import ScenarioResult


def _call_line(call: CallResult) -> str:
    if not call.connected:
        return f"    call {call.name}: NOT CONNECTED ({call.error or 'no reason given'})"
    parts = [f"setup {call.setup_ms:.0f} ms" if call.setup_ms is not None else "connected"]
    for s in call.streams:
        if s.direction == "recv" and s.kind in ("audio", "video"):
            parts.append(f"{s.endpoint} {s.kind} rx {s.packets_received} pkts")
        elif s.direction == "recv" and s.kind == "data":
            msgs = getattr(s, "messages", None)
            if msgs is not None:
                parts.append(f"{s.endpoint} data rx {msgs} msgs")
    if call.error:
        parts.append(f"error: {call.error}")
    return f"    call {call.name}: " + ", ".join(parts)


def print_result(result: ScenarioResult, out: TextIO) -> None:
    status = "PASS" if result.passed else ("ERROR" if result.error else "FAIL")
    out.write(f"{status:5} {result.name}  ({result.duration_s:.1f} s, {result.file})\n")
    if result.error:
        out.write("    " + result.error.replace("\n", "\n    ") + "\n")
    for call in result.calls:
        out.write(_call_line(call) + "\n")
    if result.censor:
        c = result.censor
        out.write(
            f"    censor: {c.get('packets', 0)} packets, {c.get('bytes', 0)} bytes, "
            f"{len(c.get('flows', []))} flows\n"
        )
    for e in result.expectations:
        mark = "ok  " if e.passed else "FAIL"
        out.write(f"    [{mark}] {e.what}: {e.detail}\n")


def print_summary(results: Sequence[ScenarioResult], out: TextIO) -> None:
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    out.write(f"\n{passed} passed, {failed} failed\n")
