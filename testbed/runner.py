"""Run scenarios: scenario -> lifecycle (topology, censor, services) -> calls + probes -> results
-> expectations.

Everything a run creates is owned by ``testbed.lifecycle.Lifecycle`` (the same one ``testbed up``
uses) and undone in reverse order on success, failure, timeout, Ctrl-C or SIGTERM (cancellation).
The endpoint processes of the calls are owned by the calls themselves, inside it. If the runner is
killed with SIGKILL, its children die with it (PR_SET_PDEATHSIG, see ``testbed.net.nsexec``) and
``testbed clean`` removes the namespaces and the run directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.calls import CallResult, ExpectationResult, run_calls
from testbed.calls import evaluate as evaluate_calls
from testbed.censor.expect import check_censor
from testbed.errors import AppNotReadyError, RunError, TestbedError
from testbed.lifecycle import (
    Lifecycle,
    LiveRun,
    Purpose,
    RunPlan,
    Step,
    StepsFor,
    default_steps,
    first_testbed_error,
)
from testbed.probes import ProbeResult, check_probe, run_probe
from testbed.records.app import AppResult
from testbed.records.json import JsonObject
from testbed.records.result import SCHEMA_VERSION
from testbed.scenario.loader import LoadedScenario
from testbed.scenario.model import Scenario


@dataclass(slots=True)
class ScenarioResult:
    name: str
    file: str
    run_id: str
    seed: int
    passed: bool = False
    duration_s: float = 0.0
    expectations: list[ExpectationResult] = field(default_factory=list)
    calls: list[CallResult] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    apps: list[AppResult] = field(default_factory=list)
    censor: JsonObject = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    """What kind of error (``app-not-ready``: an app never became ready), when it is one a
    reader may act on; None otherwise."""
    timeline_origin: dict[str, float] = field(default_factory=dict)
    """CLOCK_MONOTONIC instants the result's relative times count from: ``censor`` (the
    censor's event times), ``calls_phase`` (probes' ``started_s`` and attempts, calls' ``start_s``),
    ``apps`` (apps' ``started_s``/``ready_s``)."""

    def to_json(self) -> JsonObject:
        return {
            # Also here, not only at the top of the file: one scenario is read on its own too
            # (the HTML report, a result copied out of a file).
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "file": self.file,
            "run_id": self.run_id,
            "seed": self.seed,
            "passed": self.passed,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "error_kind": self.error_kind,
            "expectations": [e.to_json() for e in self.expectations],
            "calls": [c.to_json() for c in self.calls],
            "probes": [p.to_json() for p in self.probes],
            "apps": [a.to_json() for a in self.apps],
            "censor": self.censor,
            "timeline_origin": self.timeline_origin,
        }


Progress = Callable[[str], None]


async def run_scenario(
    loaded: LoadedScenario,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    capture_dir: Path | None = None,
    steps: StepsFor = default_steps,
    logs_dir: Path | None = None,
) -> ScenarioResult:
    """Run one scenario. ``capture_dir``: also write a pcapng of the censor's links there.
    ``logs_dir``: keep a copy of each app's log there. ``steps``: what the run owns (``testbed.lifecycle.default_steps``; tests pass fakes)."""
    scenario = loaded.scenario
    say = progress or (lambda _msg: None)
    plan = RunPlan.create(loaded, purpose=Purpose.RUN, seed=seed, capture_dir=capture_dir, logs_dir=logs_dir)
    result = ScenarioResult(name=scenario.name, file=str(loaded.path), run_id=plan.run_id, seed=plan.seed)
    started = time.monotonic()
    try:
        await _run(plan, steps(plan), result, say)
    except TestbedError as exc:
        if not isinstance(exc, RunError):
            raise
        result.error = str(exc)
        if isinstance(exc, AppNotReadyError):
            result.error_kind = AppNotReadyError.kind
    finally:
        result.duration_s = time.monotonic() - started
    result.expectations = evaluate(scenario, result.calls, result.probes, result.censor) if result.error is None else []
    result.passed = result.error is None and all(e.passed for e in result.expectations)
    return result


def precheck(loaded: LoadedScenario) -> None:
    """Everything that can be checked without root or side effects: the policy compiles against
    this scenario's nodes and lists (files included). Raises ScenarioError."""
    RunPlan.create(loaded, purpose=Purpose.RUN, run_id="000000")


async def _run(plan: RunPlan, steps: Sequence[Step], result: ScenarioResult, say: Progress) -> None:
    scenario = plan.scenario
    lifecycle = Lifecycle(plan, steps=steps, progress=say)
    try:
        async with asyncio.timeout(scenario.effective_timeout()), lifecycle as live:
            await _workloads(live, result, say)
    except TimeoutError:
        raise RunError(
            f"scenario {scenario.name!r} did not finish within its timeout of "
            f"{scenario.effective_timeout():.0f} s (set `timeout:` in the scenario to allow longer)"
        ) from None
    except BaseExceptionGroup as group:
        raise first_testbed_error(group) from None
    finally:
        # Even when the run failed (then most useful): which apps ran, how they ended, their logs.
        result.apps = [p.record() for p in lifecycle.parts.processes]
        if lifecycle.parts.apps_origin is not None:
            result.timeline_origin["apps"] = lifecycle.parts.apps_origin
        # Even when the run failed (an app never ready, a timeout): the censor was stopped on the
        # way out and its counters say which rules acted, e.g. for the matrix's "blocked by".
        censor = lifecycle.parts.censor
        if result.censor.get("rules") is None and censor is not None and censor.final is not None:
            result.censor = {**censor.final, **result.censor}
        # Even when the run failed: the capture is a diagnostic, and most useful then.
        capture = lifecycle.parts.capture
        if capture is not None:
            result.censor = {**result.censor, "capture": {"file": str(capture.path), **capture.summary}}


async def _workloads(live: LiveRun, result: ScenarioResult, say: Progress) -> None:
    """Calls and probes, side by side; then the censor's counters. A censor that dies meanwhile
    cancels this (the lifecycle watches it) and its CensorError is the run's error."""
    scenario, plan = live.plan.scenario, live.topology
    say(f"placing {len(scenario.calls)} call(s), running {len(scenario.probes)} probe(s)")
    origin = time.monotonic()
    result.timeline_origin = {"calls_phase": origin}
    if live.censor.t0 is not None:
        result.timeline_origin["censor"] = live.censor.t0
    async with asyncio.TaskGroup() as tg:
        probes = [
            tg.create_task(
                run_probe(p, plan, live.services, origin=origin, variables=scenario.variables, rundir=live.workdir)
            )
            for p in scenario.probes
        ]
        calls = tg.create_task(
            run_calls(
                scenario.calls,
                nodes={n.name: n for n in plan.nodes},
                services=live.services,
                workdir=live.workdir,
                observer=say,
                thresholds=scenario.verdict,
                origin=origin,
            )
        )
        result.calls = await calls
        result.probes = list(await asyncio.gather(*probes))
    result.censor = await live.censor.stop()


def evaluate(
    scenario: Scenario,
    calls: Sequence[CallResult],
    probes: Sequence[ProbeResult] = (),
    censor: Mapping[str, Any] | None = None,
) -> list[ExpectationResult]:
    out: list[ExpectationResult] = []
    probe_results = {p.name: p for p in probes}
    for spec in scenario.probes:
        got = probe_results.get(spec.name)
        if got is None:
            out.append(ExpectationResult(f"probe {spec.name}", False, "the probe did not run"))
            continue
        out.extend(ExpectationResult(what, ok, detail) for what, ok, detail in check_probe(spec, got))
    out.extend(
        evaluate_calls(
            scenario.expect,
            calls,
            scenario.verdict,
            call_names=[n for spec in scenario.calls for n in spec.instance_names],
        )
    )
    out.extend(check_censor(scenario.expect, censor or {}))
    return out
