"""Probes: commands a scenario runs inside its nodes (curl, openssl, iperf3, ping, a VPN client).

They let a scenario check any protocol with a real tool, not just calls: "a TLS connection with
SNI twitter.com is reset", "a download of 1 MB through the throttle takes longer than 8 s".
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testbed.net.process import netns_process, terminate
from testbed.net.topology import TopologyPlan
from testbed.scenario.model import ProbeSpec
from testbed.services.run import RunningService

_REF = re.compile(r"\{(cert:)?([a-z][a-z0-9_]*)\}")
TAIL = 2000


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    node: str
    argv: tuple[str, ...]
    exit_code: int | None
    """None when the probe ran out of time and was stopped."""
    duration_s: float
    started_s: float
    stdout_tail: str
    stderr_tail: str

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    def to_json(self) -> dict[str, Any]:
        return {
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


def substitute(word: str, plan: TopologyPlan, services: Sequence[RunningService]) -> str:
    def repl(m: re.Match[str]) -> str:
        cert, node = m.group(1), m.group(2)
        if not cert and node == "python":
            # The interpreter testbed runs under, so probes can use testbed's tools
            # (`{python} -m testbed.tools.quicget ...`) wherever testbed was started from.
            return sys.executable
        if cert:
            for svc in services:
                if svc.node == node and svc.kind in ("https", "quic") and svc.cert:
                    return svc.cert
            raise KeyError(f"{{cert:{node}}}: node {node!r} runs no https or quic service")
        return plan.node(node).public_address

    return _REF.sub(repl, word)


async def run_probe(
    spec: ProbeSpec, plan: TopologyPlan, services: Sequence[RunningService], *, origin: float
) -> ProbeResult:
    argv = tuple(substitute(w, plan, services) for w in spec.run)
    netns = plan.censor_netns if spec.node == "censor" else plan.node(spec.node).netns
    delay = origin + spec.start - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    started = time.monotonic()
    async with netns_process(
        netns, list(argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    ) as proc:
        exit_code: int | None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), spec.timeout)
            exit_code = proc.returncode
        except TimeoutError:
            await terminate(proc, 2.0)
            out, err = b"", b""
            exit_code = None
    return ProbeResult(
        name=spec.name,
        node=spec.node,
        argv=argv,
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        started_s=started - origin,
        stdout_tail=out.decode(errors="replace")[-TAIL:],
        stderr_tail=err.decode(errors="replace")[-TAIL:],
    )


def check_probe(spec: ProbeSpec, result: ProbeResult) -> list[tuple[str, bool, str]]:
    """(what, passed, detail) for each of the probe's expectations."""
    exp = spec.expect
    out: list[tuple[str, bool, str]] = []
    got = "timed out" if result.timed_out else f"exit {result.exit_code}"
    took = f"after {result.duration_s:.2f} s"
    if exp.exit == "nonzero":
        ok = result.timed_out or result.exit_code != 0
        out.append((f"probe {spec.name}: fails", ok, f"{got} {took}" + ("" if ok else f"; stdout: {result.stdout_tail[-200:]!r}")))
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
        out.append((f"probe {spec.name}: slower than {exp.slower_than:g} s", ok, f"took {result.duration_s:.2f} s ({got})"))
    return out
