"""One lifecycle for `testbed run` and `testbed up` (issue 11).

Both paths are driven with fake steps (no root, no namespaces): each step records when it is
entered and left, so the tests show that `run_scenario` and `hold` go through the same
``Lifecycle``, make everything in order and undo it in reverse, on success and on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import CensorError, RunError
from testbed.lifecycle import (
    CENSOR,
    RUN_DIR,
    SERVICES,
    TOPOLOGY,
    Lifecycle,
    Parts,
    Purpose,
    RunPlan,
    Step,
    default_steps,
    insert_after,
)
from testbed.net.topology import Topology
from testbed.runner import run_scenario
from testbed.scenario.loader import LoadedScenario, parse_scenario
from testbed.session import SessionState, hold

SCENARIO = """\
name: fake
nodes:
  caller: {side: inside}
  server: {side: outside}
censor:
  rules:
    - {name: dns, match: {dst_port: 53}, action: drop}
"""
SUMMARY: dict[str, Any] = {"rules": [], "events": [], "flows": []}
APPS = "apps"  # the step the coming apps feature adds after the services


class FakeCensor:
    """Like ``CensorHandle``: ``watch`` returns never while healthy; with ``dies`` the process is
    gone at once, ``watch`` raises, and ``stop`` (which waits for the process) raises too."""

    def __init__(self, *, dies: bool = False) -> None:
        self.t0: float | None = 100.0
        self.dies = dies
        self.dead = asyncio.Event()
        self.stopping = False
        self.final: dict[str, Any] | None = None

    async def watch(self) -> None:
        if self.dies:
            await asyncio.sleep(0)
            self.dead.set()
            raise CensorError("the censor engine exited unexpectedly mid-run (exit code -9)")
        await asyncio.Event().wait()

    async def stop(self) -> dict[str, Any]:
        self.stopping = True
        if self.dies:
            await self.dead.wait()
            raise CensorError("the censor engine exited unexpectedly while stopping (exit code -9)")
        self.final = SUMMARY
        return SUMMARY


@dataclass
class Recorder:
    """Fake steps that log ("enter", name) and ("exit", name, what ended the block)."""

    workdir: Path
    censor: FakeCensor = field(default_factory=FakeCensor)
    fail_on: str | None = None
    log: list[tuple[str, ...]] = field(default_factory=list)

    def steps(self, _plan: RunPlan) -> Sequence[Step]:
        return tuple(Step(name, self._step(name)) for name in (RUN_DIR, TOPOLOGY, CENSOR, SERVICES, APPS))

    def _step(self, name: str) -> Any:
        @contextlib.asynccontextmanager
        async def enter(parts: Parts) -> AsyncIterator[None]:
            self.log.append(("enter", name))
            if name == self.fail_on:
                raise RunError(f"{name} failed to start")
            if name == RUN_DIR:
                parts.workdir = self.workdir
            elif name == TOPOLOGY:
                parts.network = Topology(parts.plan.topology, {})
            elif name == CENSOR:
                parts.censor = self.censor
                parts.watchers.append(self.censor.watch)
            # Like running_censor and running_services: a TaskGroup (for their output readers)
            # around the block, which turns an error passing through into an ExceptionGroup.
            async with asyncio.TaskGroup() if name in (CENSOR, SERVICES) else contextlib.nullcontext():
                try:
                    yield
                except BaseException as exc:
                    self.log.append(("exit", name, type(exc).__name__))
                    if name == CENSOR and not self.censor.dies:
                        self.censor.final = SUMMARY  # running_censor stops it on the way out
                    raise
                self.log.append(("exit", name, "ok"))

        return enter


ORDER = [RUN_DIR, TOPOLOGY, CENSOR, SERVICES, APPS]


def _loaded(tmp_path: Path) -> LoadedScenario:
    path = tmp_path / "fake.yaml"
    path.write_text(SCENARIO)
    return LoadedScenario(path, parse_scenario(SCENARIO, str(path), idle_ok=True))


def _entered(log: list[tuple[str, ...]]) -> list[str]:
    return [e[1] for e in log if e[0] == "enter"]


def _exited(log: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    return [(e[1], e[2]) for e in log if e[0] == "exit"]


def test_run_makes_everything_in_order_and_undoes_it_in_reverse(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    result = asyncio.run(run_scenario(_loaded(tmp_path), steps=rec.steps))
    assert result.error is None and result.passed
    assert result.censor == SUMMARY and rec.censor.stopping
    assert result.timeline_origin["censor"] == 100.0
    assert _entered(rec.log) == ORDER
    assert _exited(rec.log) == [(n, "ok") for n in reversed(ORDER)]


def test_run_undoes_what_was_made_when_a_step_fails(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, fail_on=SERVICES)
    result = asyncio.run(run_scenario(_loaded(tmp_path), steps=rec.steps))
    assert result.error == "services failed to start" and not result.passed
    assert _entered(rec.log) == [RUN_DIR, TOPOLOGY, CENSOR, SERVICES]  # apps never started
    assert _exited(rec.log) == [(CENSOR, "RunError"), (TOPOLOGY, "RunError"), (RUN_DIR, "RunError")]


def test_a_failed_run_keeps_the_counters_of_the_censor_it_stopped_on_the_way_out(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, fail_on=APPS)  # e.g. a VPN client whose tunnel never came up
    result = asyncio.run(run_scenario(_loaded(tmp_path), steps=rec.steps))
    assert result.error == "apps failed to start" and not result.passed
    assert result.censor == SUMMARY  # which rules acted: the matrix names the one that blocked


def test_run_fails_with_the_censor_error_when_the_censor_dies_mid_run(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, censor=FakeCensor(dies=True))

    async def bounded() -> Any:
        async with asyncio.timeout(60):  # generous: only guards against a hang
            return await run_scenario(_loaded(tmp_path), steps=rec.steps)

    result = asyncio.run(bounded())
    assert result.error is not None and "exited unexpectedly mid-run" in result.error
    assert result.censor == {}  # no counters from a censor that died
    assert _exited(rec.log) == [(n, "CensorError") for n in reversed(ORDER)]


def _hold(tmp_path: Path, rec: Recorder, json_out: Path | None, *, cancel_when_ready: bool) -> list[SessionState]:
    ready: list[SessionState] = []

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None

        def on_ready(state: SessionState) -> None:
            ready.append(state)
            if cancel_when_ready:
                task.cancel()  # what `down`'s SIGTERM does to the supervisor

        async with asyncio.timeout(60):  # generous: only guards against a hang
            await hold(_loaded(tmp_path), on_ready, json_out, steps=rec.steps)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    return ready


def test_up_makes_everything_in_order_and_down_undoes_it_in_reverse(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    json_out = tmp_path / "counters.json"
    (state,) = _hold(tmp_path, rec, json_out, cancel_when_ready=True)
    assert _entered(rec.log) == ORDER
    assert _exited(rec.log) == [(n, "CancelledError") for n in reversed(ORDER)]
    assert rec.censor.stopping
    assert json.loads(json_out.read_text()) == {"run_id": state.run_id, "censor": SUMMARY}
    on_disk = SessionState.from_json(json.loads((tmp_path / "state.json").read_text()))
    assert on_disk == state
    assert on_disk.nodes["caller"].side == "inside" and on_disk.nodes["server"].addresses == ("198.18.2.2",)


def test_up_undoes_what_was_made_when_a_step_fails(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, fail_on=SERVICES)
    json_out = tmp_path / "counters.json"
    with pytest.raises(RunError, match="services failed to start"):
        _hold(tmp_path, rec, json_out, cancel_when_ready=False)
    assert _entered(rec.log) == [RUN_DIR, TOPOLOGY, CENSOR, SERVICES]
    assert _exited(rec.log) == [(CENSOR, "RunError"), (TOPOLOGY, "RunError"), (RUN_DIR, "RunError")]
    assert not json_out.exists()  # never up: `up` itself reports the error


def test_up_ends_with_the_censor_error_when_the_censor_dies(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, censor=FakeCensor(dies=True))
    json_out = tmp_path / "counters.json"
    with pytest.raises(CensorError, match="mid-run"):
        _hold(tmp_path, rec, json_out, cancel_when_ready=False)
    assert _exited(rec.log) == [(n, "CensorError") for n in reversed(ORDER)]
    doc = json.loads(json_out.read_text())
    assert "censor" not in doc and "exited unexpectedly mid-run" in doc["error"]


def test_the_default_steps_are_what_a_run_owns(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    plain = RunPlan.create(loaded, purpose=Purpose.RUN, run_id="000000")
    assert [s.name for s in default_steps(plain)] == [RUN_DIR, TOPOLOGY, CENSOR]  # no services in it
    captured = RunPlan.create(loaded, purpose=Purpose.RUN, run_id="000000", capture_dir=tmp_path)
    assert [s.name for s in default_steps(captured)] == [RUN_DIR, TOPOLOGY, "capture", CENSOR]
    extra = Step(APPS, Recorder(tmp_path)._step(APPS))
    assert [s.name for s in insert_after(default_steps(plain), CENSOR, extra)] == [RUN_DIR, TOPOLOGY, CENSOR, APPS]
    with pytest.raises(ValueError, match="no step"):
        insert_after(default_steps(plain), "nope", extra)


def test_a_lifecycle_without_a_censor_step_is_a_clear_error(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    plan = RunPlan.create(_loaded(tmp_path), purpose=Purpose.RUN, run_id="000000")
    steps = [s for s in rec.steps(plan) if s.name != CENSOR]

    async def main() -> None:
        async with Lifecycle(plan, steps=steps):
            pass

    with pytest.raises(RuntimeError, match="did not make: censor"):
        asyncio.run(main())
    assert _exited(rec.log) == [(n, "RuntimeError") for n in reversed([RUN_DIR, TOPOLOGY, SERVICES, APPS])]
