"""Run scenarios: scenario -> topology -> censor -> calls -> results -> expectations.

Everything a run creates is owned by one ``AsyncExitStack`` and undone in reverse order on
success, failure, Ctrl-C or SIGTERM (cancellation): endpoint processes, then the censor process,
then namespaces (which takes their links and iptables rules with them), then the run directory.
If the runner itself is killed with SIGKILL, its children die with it (PR_SET_PDEATHSIG, see
``testbed.net.nsexec``) and ``testbed clean`` removes the namespaces and the run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.calls import CallResult, ExpectationResult, run_calls
from testbed.calls import evaluate as evaluate_calls
from testbed.censor.capture import CaptureHandle, running_capture
from testbed.censor.control import running_censor
from testbed.censor.expect import check_censor
from testbed.censor.policy_setup import PolicyCompileError, PolicyConfig, build_policy, policy_config
from testbed.errors import RunError, ScenarioError, TestbedError
from testbed.net.names import new_run_id
from testbed.net.runs import registered_run
from testbed.net.topology import TopologyPlan, build_topology, plan_topology
from testbed.probes import ProbeResult, check_probe, run_probe
from testbed.records.json import JsonObject
from testbed.records.result import SCHEMA_VERSION
from testbed.scenario.loader import LoadedScenario
from testbed.scenario.model import Scenario
from testbed.services.run import running_services


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
    censor: JsonObject = field(default_factory=dict)
    error: str | None = None
    timeline_origin: dict[str, float] = field(default_factory=dict)
    """CLOCK_MONOTONIC instants the result's relative times count from: ``censor`` (the
    censor's event times), ``calls_phase`` (probes' ``started_s`` and calls' ``start_s``)."""

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
            "expectations": [e.to_json() for e in self.expectations],
            "calls": [c.to_json() for c in self.calls],
            "probes": [p.to_json() for p in self.probes],
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
) -> ScenarioResult:
    """Run one scenario. ``capture_dir``: also write a pcapng of the censor's links there."""
    scenario = loaded.scenario
    say = progress or (lambda _msg: None)
    run_id = new_run_id()
    result = ScenarioResult(
        name=scenario.name,
        file=str(loaded.path),
        run_id=run_id,
        seed=scenario.seed if seed is None else seed,
    )
    started = time.monotonic()
    try:
        await _run(scenario, loaded.path, result, say, capture_dir)
    except TestbedError as exc:
        if not isinstance(exc, RunError):
            raise
        result.error = str(exc)
    finally:
        result.duration_s = time.monotonic() - started
    result.expectations = evaluate(scenario, result.calls, result.probes, result.censor) if result.error is None else []
    result.passed = result.error is None and all(e.passed for e in result.expectations)
    return result


def checked_policy_config(scenario: Scenario, plan: TopologyPlan, file: Path, seed: int) -> PolicyConfig:
    """The censor's policy config, compiled once here so mistakes surface before any setup."""
    config = policy_config(scenario, plan, file.resolve().parent)
    try:
        build_policy(config, seed=seed, start=0.0)
    except PolicyCompileError as exc:
        raise ScenarioError(str(exc), file=str(file), key="censor") from None
    return config


def precheck(loaded: LoadedScenario) -> None:
    """Everything that can be checked without root or side effects: the policy compiles against
    this scenario's nodes and lists (files included). Raises ScenarioError."""
    plan = plan_topology(loaded.scenario, "000000")
    checked_policy_config(loaded.scenario, plan, loaded.path, loaded.scenario.seed)


async def _run(
    scenario: Scenario, file: Path, result: ScenarioResult, say: Progress, capture_dir: Path | None
) -> None:
    capture: CaptureHandle | None = None
    try:
        async with contextlib.AsyncExitStack() as stack, asyncio.timeout(scenario.effective_timeout()):
            workdir = stack.enter_context(registered_run(result.run_id))
            plan = plan_topology(scenario, result.run_id)
            policy = checked_policy_config(scenario, plan, file, result.seed)
            say(f"building network (run {result.run_id})")
            await stack.enter_async_context(build_topology(plan))
            if capture_dir is not None:
                capture_dir.mkdir(parents=True, exist_ok=True)
                capture = await stack.enter_async_context(
                    running_capture(
                        plan.censor_netns,
                        [n.censor_ifname for n in plan.nodes],
                        capture_dir / f"{scenario.name}-{result.run_id}.pcapng",
                    )
                )
            say("starting censor")
            censor = await stack.enter_async_context(
                running_censor(plan, scenario.censor, workdir, seed=result.seed, policy=policy)
            )
            services = []
            if any(spec.services for spec in scenario.nodes.values()):
                say("starting services")
                services = await stack.enter_async_context(running_services(plan, scenario, workdir))
            say(f"placing {len(scenario.calls)} call(s), running {len(scenario.probes)} probe(s)")
            origin = time.monotonic()
            result.timeline_origin = {"calls_phase": origin}
            if censor.t0 is not None:
                result.timeline_origin["censor"] = censor.t0
            async with asyncio.TaskGroup() as tg:
                watch = tg.create_task(censor.watch())
                probes = [tg.create_task(run_probe(p, plan, services, origin=origin)) for p in scenario.probes]
                calls = tg.create_task(
                    run_calls(
                        scenario.calls,
                        nodes={n.name: n for n in plan.nodes},
                        services=services,
                        workdir=workdir,
                        observer=say,
                        thresholds=scenario.verdict,
                        origin=origin,
                    )
                )
                try:
                    result.calls = await calls
                    result.probes = list(await asyncio.gather(*probes))
                finally:
                    watch.cancel()
            result.censor = await censor.stop()
    except TimeoutError:
        raise RunError(
            f"scenario {scenario.name!r} did not finish within its timeout of "
            f"{scenario.effective_timeout():.0f} s (set `timeout:` in the scenario to allow longer)"
        ) from None
    except BaseExceptionGroup as group:
        raise _first_testbed_error(group) from None
    finally:
        if capture is not None:
            result.censor = {**result.censor, "capture": {"file": str(capture.path), **capture.summary}}


def _first_testbed_error(group: BaseExceptionGroup) -> BaseException:
    """Structured concurrency reports failures as groups; users want the one that mattered."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_testbed_error(exc)
            if isinstance(inner, TestbedError):
                return inner
        elif isinstance(exc, TestbedError):
            return exc
    return group


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


