"""Human-readable results on the terminal: a compact table per scenario, progress while runs go.

Works on the result dicts that ``ScenarioResult.to_json()`` produces (a ``ScenarioResult`` is
accepted too and converted), so the same output can be rebuilt from a saved ``--json`` file::

    PASS  baseline  (7.9 s, scenarios/baseline.yaml)
      call          outcome    setup   MOS   loss  why it failed
      direct-audio  connected  95 ms   4.3   0.0%
      censor: 1104 packets, 218112 bytes, 1 flows
      rules: drop-dtls (drop (both)): 1 flow(s), 6 dropped          (when the scenario has rules)
      [ok  ] direct-audio: connected == true: connected in 95 ms

    1 passed, 0 failed

The last line of the summary is exactly ``N passed, M failed``: scripts grep for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from testbed.records.censor_event import EventKind
from testbed.report.digest import (
    as_dict,
    call_digest,
    censor_events,
    censor_rules,
    fmt_num,
    scenario_status,
)

__all__ = ["ProgressBoard", "format_call_table", "format_probe_table", "print_result", "print_summary"]

WHY_WIDTH = 72
_BLOCKING = ("cut", "block", "reject", "residual", "drop")
INDENT = "    "


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_call_table(result: Mapping[str, Any], *, why_width: int = WHY_WIDTH) -> list[str]:
    """One header line and one line per call: call, outcome, setup, MOS, loss, why it failed."""
    calls = [c for c in result.get("calls") or [] if isinstance(c, Mapping)]
    if not calls:
        return []
    expectations = [e for e in result.get("expectations") or [] if isinstance(e, Mapping)]
    rows = [("call", "outcome", "setup", "MOS", "loss", "why it failed")]
    for call in calls:
        d = call_digest(call, expectations)
        rows.append(
            (
                d.name,
                d.outcome,
                fmt_num(d.setup_ms, " ms"),
                fmt_num(d.mos, digits=1),
                fmt_num(d.loss_pct, "%", 1),
                _clip(d.why, why_width),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    right = (False, False, True, True, True)
    lines = []
    for r in rows:
        cells = [r[i].rjust(widths[i]) if right[i] else r[i].ljust(widths[i]) for i in range(5)]
        lines.append((INDENT + "  ".join(cells) + "  " + r[5]).rstrip())
    return lines


def format_probe_table(result: Mapping[str, Any]) -> list[str]:
    """One line per probe (a command run in a node): probe, node, exit, duration."""
    probes = [p for p in result.get("probes") or [] if isinstance(p, Mapping)]
    if not probes:
        return []
    rows = [("probe", "node", "exit", "time")]
    for p in probes:
        code = "timeout" if p.get("timed_out") else str(p.get("exit_code", "—"))
        pct = p.get("success_pct")
        if isinstance(pct, (int, float)):  # a repeated probe: its attempts, not its last exit
            code = f"{pct:g}% of {len(p.get('attempts') or [])} ok"
        rows.append((str(p.get("name", "?")), str(p.get("node", "?")), code, fmt_num(p.get("duration_s"), " s", 2)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        (INDENT + "  ".join(c.rjust(widths[i]) if i >= 2 else c.ljust(widths[i]) for i, c in enumerate(r))).rstrip()
        for r in rows
    ]


def format_app_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per app: node, ready or not, how it ended, its log."""
    out = []
    for a in result.get("apps") or []:
        if not isinstance(a, Mapping):
            continue
        ready = "ready" if a.get("ready_s") is not None else "never ready"
        end = "alive at end" if a.get("alive_at_end") else f"exit {a.get('exit_code')}"
        dropped = f", {a['dropped_bytes']} bytes of output left out" if a.get("dropped_bytes") else ""
        out.append(
            f"{INDENT}app {a.get('name', '?')} on {a.get('node', '?')}: {ready}, {end}{dropped}; log {a.get('log')}"
        )
    return out


def _rules_line(censor: Mapping[str, Any]) -> str | None:
    parts = []
    for rule in censor_rules(censor):
        flows = rule.get("matched_flows")
        if not flows:
            continue
        what = [f"{flows} flow(s)"]
        for key in ("dropped", "delayed", "rejected"):
            if rule.get(key):
                what.append(f"{rule[key]} {key}")
        parts.append(f"{rule.get('name')} ({rule.get('action', '?')}): " + ", ".join(what))
    return f"{INDENT}rules: " + "; ".join(parts) if parts else None


def _flow_count(censor: Mapping[str, Any]) -> int:
    # `flows` lists at most a bounded number (docs/reports.md); `flows_total` counts them all.
    total = censor.get("flows_total")
    return total if isinstance(total, int) else len(censor.get("flows") or [])


def _censor_line(censor: Mapping[str, Any]) -> str | None:
    if not censor:
        return None
    line = (
        f"{INDENT}censor: {censor.get('packets', 0)} packets, {censor.get('bytes', 0)} bytes, "
        f"{_flow_count(censor)} flows"
    )
    actions = censor.get("actions")
    if isinstance(actions, Mapping):
        not_accepted = {k: v for k, v in actions.items() if k != "accept" and v}
        if not_accepted:
            line += " (" + ", ".join(f"{v} {k}" for k, v in sorted(not_accepted.items())) + ")"
    events = [e for e in censor_events(censor) if e.event not in (EventKind.MATCH, EventKind.IGNORE)]
    if events:
        # The first event that stopped traffic explains a failed call best; else the first at all.
        first = next((e for e in events if e.event in _BLOCKING), events[0])
        rule = f" by {first.rule}" if first.rule else ""
        line += f"; {len(events)} censor event(s), {first.event}{rule} at {first.t:.1f} s"
    return line


def print_result(result: Any, out: TextIO) -> None:
    """One scenario: status line, error, call table, censor line, expectations."""
    r = as_dict(result)
    status = scenario_status(r)
    out.write(f"{status:5} {r.get('name', '?')}  ({fmt_num(r.get('duration_s'), ' s', 1)}, {r.get('file', '?')})\n")
    if r.get("error"):
        out.write(INDENT + str(r["error"]).replace("\n", "\n" + INDENT) + "\n")
    for line in format_call_table(r):
        out.write(line + "\n")
    for line in format_probe_table(r):
        out.write(line + "\n")
    for line in format_app_lines(r):
        out.write(line + "\n")
    censor = r.get("censor")
    if isinstance(censor, Mapping):
        for extra in (_censor_line(censor), _rules_line(censor)):
            if extra:
                out.write(extra + "\n")
    for e in r.get("expectations") or []:
        mark = "ok  " if e.get("passed") else "FAIL"
        out.write(f"{INDENT}[{mark}] {e.get('what', '?')}: {e.get('detail', '')}\n")


def print_summary(results: Sequence[Any], out: TextIO) -> None:
    """Failed scenarios by name, then exactly ``N passed, M failed`` as the last line."""
    dicts = [as_dict(r) for r in results]
    passed = sum(bool(r.get("passed")) for r in dicts)
    failed = len(dicts) - passed
    bad = [r for r in dicts if not r.get("passed")]
    out.write("\n")
    for r in bad:
        out.write(f"{scenario_status(r):5} {r.get('name', '?')}  ({r.get('file', '?')})\n")
    out.write(f"{passed} passed, {failed} failed\n")


class ProgressBoard:
    """What each running scenario is doing, for stderr.

    On a terminal (``live``), one line per running scenario is redrawn in place (so ``-j 2``
    shows both); elsewhere (CI logs, pipes) each message is one plain line, prefixed with the
    scenario's name when more than one may run.  Results printed through :meth:`print_result`
    go above the live lines so they never interleave.

    ``for_scenario(name)`` gives the ``progress`` callback that ``run_scenario`` takes.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        live: bool | None = None,
        prefix_names: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.prefix_names = prefix_names
        self.clock = clock
        self._running: dict[str, tuple[float, str]] = {}
        self._drawn = 0

    def start(self, name: str, file: str = "") -> None:
        self._running[name] = (self.clock(), "starting")
        if self.live:
            self._redraw()
        else:
            self.out.write(f"RUN   {name}" + (f"  ({file})" if file else "") + "\n")
            self.out.flush()

    def update(self, name: str, message: str) -> None:
        started, _ = self._running.get(name, (self.clock(), ""))
        self._running[name] = (started, message)
        if self.live:
            self._redraw()
        else:
            prefix = f"[{name}] " if self.prefix_names else ""
            self.out.write(f"      {prefix}{message}\n")
            self.out.flush()

    def for_scenario(self, name: str) -> Callable[[str], None]:
        return lambda message: self.update(name, message)

    def finish(self, name: str) -> None:
        self._running.pop(name, None)
        if self.live:
            self._redraw()

    def print_result(self, result: Any, out: TextIO) -> None:
        """Print a finished scenario's result (``out`` is usually stdout) and drop its line."""
        r = as_dict(result)
        self._clear()
        print_result(r, out)
        out.flush()
        self.finish(str(r.get("name", "")))

    def close(self) -> None:
        self._clear()

    async def tick(self, interval_s: float = 1.0) -> None:
        """Redraw the live lines every ``interval_s`` so elapsed times move between messages;
        run it as a task next to the scenarios and cancel it when they are done."""
        while True:
            await asyncio.sleep(interval_s)
            if self.live and self._running:
                self._redraw()

    def _clear(self) -> None:
        if self.live and self._drawn:
            # Cursor up over the lines we drew, then clear to the end of the screen.
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self.out.flush()
            self._drawn = 0

    def _redraw(self) -> None:
        self._clear()
        now = self.clock()
        for name, (started, message) in self._running.items():
            self.out.write(f"  ..  {name}  {now - started:5.1f} s  {_clip(message, 60)}\n")
        self._drawn = len(self._running)
        self.out.flush()
