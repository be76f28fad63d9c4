"""Probes: commands a scenario runs inside its nodes (curl, openssl, iperf3, ping, a VPN client).

They let a scenario check any protocol with a real tool, not just calls: "a TLS connection with
SNI twitter.com is reset", "a download of 1 MB through the throttle takes longer than 8 s".
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import RunError
from testbed.net.process import netns_process, signal_group, terminate
from testbed.net.topology import TopologyPlan
from testbed.records.json import JsonObject
from testbed.records.probe import ProbeAttempt
from testbed.scenario import template
from testbed.scenario.model import ProbeSpec
from testbed.services.run import RunningService

TAIL = 2000


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    node: str
    argv: tuple[str, ...]
    exit_code: int | None
    """None when the probe ran out of time and was stopped (a repeated probe: its last attempt)."""
    duration_s: float
    started_s: float
    stdout_tail: str
    stderr_tail: str
    attempts: tuple[ProbeAttempt, ...] = ()
    """A repeated probe's attempts, in order (empty for a one-shot probe)."""

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    @property
    def success_pct(self) -> float | None:
        if not self.attempts:
            return None
        return 100.0 * sum(a.ok for a in self.attempts) / len(self.attempts)

    @property
    def first_failure_s(self) -> float | None:
        """When the first failed attempt started (the attempts' clock), or None."""
        return next((a.t_s for a in self.attempts if not a.ok), None)

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "name": self.name,
            "node": self.node,
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "started_s": round(self.started_s, 3),
            "duration_s": round(self.duration_s, 3),
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
        }
        if self.attempts:
            pct = self.success_pct
            first = self.first_failure_s
            out["attempts"] = [a.to_json() for a in self.attempts]
            out["success_pct"] = None if pct is None else round(pct, 2)
            out["first_failure_s"] = None if first is None else round(first, 3)
        return out


def substitute(
    word: str,
    plan: TopologyPlan,
    services: Sequence[RunningService],
    variables: Mapping[str, str] | None = None,
    rundir: Path | None = None,
) -> str:
    """``word`` with its placeholders (testbed.scenario.template) rendered for this run."""
    certs: dict[str, tuple[str, str]] = {}
    for svc in services:
        if svc.kind in ("https", "quic") and svc.cert:
            certs.setdefault(svc.node, (svc.cert, svc.key or ""))
    value = template.lookup(
        addresses={n.name: n.public_address for n in plan.nodes},
        addresses6={n.name: n.public_address6 for n in plan.nodes if n.public_address6 is not None},
        variables=variables or {},
        certs=certs,
        # The interpreter testbed runs under, so probes can use testbed's tools
        # (`{python} -m testbed.tools.quicget ...`) wherever testbed was started from.
        python=sys.executable,
        rundir=str(rundir) if rundir is not None else "",
    )
    try:
        return template.render(word, value)
    except KeyError as exc:
        raise RunError(f"probe word {word!r}: {exc.args[0]} cannot be filled in this run") from None


async def _attempt(netns: str, argv: Sequence[str], timeout: float) -> tuple[int | None, bytes, bytes, float]:
    started = time.monotonic()
    async with netns_process(netns, list(argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) as proc:
        exit_code: int | None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            exit_code = proc.returncode
        except TimeoutError:
            # The whole group: a probe's pipeline or background child must not outlive it.
            signal_group(proc, signal.SIGTERM)
            await terminate(proc, 2.0)
            signal_group(proc, signal.SIGKILL)
            out, err = b"", b""
            exit_code = None
    return exit_code, out, err, time.monotonic() - started


async def run_probe(
    spec: ProbeSpec,
    plan: TopologyPlan,
    services: Sequence[RunningService],
    *,
    origin: float,
    variables: Mapping[str, str] | None = None,
    rundir: Path | None = None,
) -> ProbeResult:
    argv = tuple(substitute(w, plan, services, variables, rundir) for w in spec.run)
    netns = plan.censor_netns if spec.node == "censor" else plan.node(spec.node).netns
    delay = origin + spec.start - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    started = time.monotonic()
    attempts: list[ProbeAttempt] = []
    repeat = spec.repeat
    while True:
        t = time.monotonic()
        exit_code, out, err, took = await _attempt(netns, argv, spec.timeout)
        if repeat is None:
            break
        attempts.append(ProbeAttempt(t - origin, exit_code, took))
        # The next tick after this attempt (attempts never overlap; a slow one skips ticks).
        elapsed = time.monotonic() - started
        ticks = int(elapsed // repeat.every) + 1
        if ticks * repeat.every >= repeat.until - 1e-9:
            break
        await asyncio.sleep(max(0.0, started + ticks * repeat.every - time.monotonic()))
    return ProbeResult(
        name=spec.name,
        node=spec.node,
        argv=argv,
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        started_s=started - origin,
        stdout_tail=out.decode(errors="replace")[-TAIL:],
        stderr_tail=err.decode(errors="replace")[-TAIL:],
        attempts=tuple(attempts),
    )


def check_probe(spec: ProbeSpec, result: ProbeResult) -> list[tuple[str, bool, str]]:
    """(what, passed, detail) for each of the probe's expectations."""
    exp = spec.expect
    out: list[tuple[str, bool, str]] = []
    if spec.repeat is not None:
        return check_attempts(spec, result)
    got = "timed out" if result.timed_out else f"exit {result.exit_code}"
    took = f"after {result.duration_s:.2f} s"
    if exp.exit == "nonzero":
        ok = result.timed_out or result.exit_code != 0
        out.append(
            (
                f"probe {spec.name}: fails",
                ok,
                f"{got} {took}" + ("" if ok else f"; stdout: {result.stdout_tail[-200:]!r}"),
            )
        )
    else:
        ok = result.exit_code == exp.exit
        detail = f"expected exit {exp.exit}, got {got} {took}"
        if not ok and result.stderr_tail:
            detail += f"; stderr: {result.stderr_tail.strip()[-300:]}"
        out.append((f"probe {spec.name}: exit == {exp.exit}", ok, detail))
    if exp.within is not None:
        ok = not result.timed_out and result.duration_s <= exp.within
        out.append((f"probe {spec.name}: within {exp.within:g} s", ok, f"took {result.duration_s:.2f} s ({got})"))
    if exp.slower_than is not None:
        ok = result.timed_out or result.duration_s >= exp.slower_than
        out.append(
            (f"probe {spec.name}: slower than {exp.slower_than:g} s", ok, f"took {result.duration_s:.2f} s ({got})")
        )
    return out


def check_attempts(spec: ProbeSpec, result: ProbeResult) -> list[tuple[str, bool, str]]:
    """A repeated probe's expectations, over its attempts (an attempt succeeds when it exits 0)."""
    exp = spec.expect
    attempts = result.attempts
    n = len(attempts)
    ok_n = sum(a.ok for a in attempts)
    pct = result.success_pct or 0.0
    summary = f"{ok_n}/{n} attempts succeeded ({pct:.1f}%)"
    out: list[tuple[str, bool, str]] = []
    wanted = exp.success_pct.min if exp.success_pct is not None else (100.0 if exp.blocked_within is None else None)
    if wanted is not None:
        out.append(
            (f"probe {spec.name}: success >= {wanted:g}%", n > 0 and pct >= wanted, _with_failure(summary, result))
        )
    if exp.blocked_within is not None:
        first = result.first_failure_s
        if first is None:
            out.append(
                (f"probe {spec.name}: blocked within {exp.blocked_within:g} s", False, f"no attempt failed; {summary}")
            )
        else:
            since = first - attempts[0].t_s  # counted from the first attempt, as the detail says
            late = [a for a in attempts if a.ok and a.t_s > first]
            ok = since <= exp.blocked_within and not late
            detail = f"first failure {since:.1f} s after the first attempt; {summary}"
            if late:
                detail += (
                    f"; {len(late)} attempt(s) succeeded after it (first at {late[0].t_s - result.started_s:.1f} s)"
                )
            out.append((f"probe {spec.name}: blocked within {exp.blocked_within:g} s", ok, detail))
    return out


def _with_failure(summary: str, result: ProbeResult) -> str:
    if result.first_failure_s is None:
        return summary
    detail = f"{summary}; first failure at {result.first_failure_s - result.started_s:.1f} s"
    if result.exit_code != 0 and result.stderr_tail.strip():
        detail += f"; last stderr: {result.stderr_tail.strip()[-200:]}"
    return detail
