"""Cancelling the network build at any point leaves nothing behind (issue 14 item 7).

``timeout: 0`` used to leak a namespace: the cancellation landed while ``netns.create`` ran in a
worker thread, before its removal was registered, and the thread went on to create it after the
build had been unwound.  Here the build is cancelled at many points, from before its first
await to after it completed, and after each one no ``tb-<rid>-*`` namespace or link may remain.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from testbed.net import names
from testbed.net.topology import TopologyPlan, build_topology, plan_topology
from testbed.scenario.loader import parse_scenario

pytestmark = pytest.mark.netns

# A NAT node too: its build has the most awaits (two links, a route in the NAT, a NAT process).
SCENARIO = """
name: cancel
nodes:
  caller: {side: inside}
  callee: {side: outside, nat: symmetric}
calls: [{name: c}]
"""


def _leftovers(run_id: str) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    found = [ln.split()[0] for ln in netns.splitlines() if ln.startswith(f"tb-{run_id}-")]
    found += [ln for ln in links.splitlines() if f"tb{run_id}" in ln]
    return found


def _remove(run_id: str) -> None:
    """Belt and braces for a failing test: remove what this test's run id left, nothing else."""
    for ns in _leftovers(run_id):
        if ns.startswith(f"tb-{run_id}-"):
            subprocess.run(["ip", "netns", "delete", ns], check=False)


async def _build(plan: TopologyPlan, *, delay: float | None, yields: int | None) -> bool:
    """Build ``plan`` and cancel it after ``delay`` seconds or ``yields`` loop iterations; True if
    the build completed before the cancellation."""
    built = asyncio.Event()

    async def hold() -> None:
        async with build_topology(plan):
            built.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold())
    if yields is not None:
        for _ in range(yields):
            await asyncio.sleep(0)
    else:
        assert delay is not None
        ready = asyncio.create_task(built.wait())
        await asyncio.wait({task, ready}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass  # anything else (a build error) propagates and fails the test
    assert task.cancelled()
    return built.is_set()


def _attempt(*, delay: float | None = None, yields: int | None = None) -> bool:
    run_id = names.new_run_id()
    plan = plan_topology(parse_scenario(SCENARIO, "cancel.yaml"), run_id)
    try:
        # asyncio.run waits for the default executor's threads, so a namespace that a worker
        # thread creates after the cancellation is there to be seen below.
        built = asyncio.run(_build(plan, delay=delay, yields=yields))
        left = _leftovers(run_id)
        assert not left, f"cancelled after {delay=} {yields=}: left {left}"
        return built
    finally:
        _remove(run_id)


def test_cancel_at_every_point_of_the_build_leaks_nothing(unchanged_host: dict[str, str]) -> None:
    # Cancellation before, at and just after the first awaits (the timeout: 0 case) ...
    for yields in (0, 1, 2, 3, 5, 8, 13, 21, 34, 55):
        _attempt(yields=yields)
    # ... and spread over the whole build, whatever it takes on this machine.
    started = time.monotonic()
    assert _attempt(delay=600.0), "the build never completed"
    full = time.monotonic() - started
    completed = 0
    for i in range(1, 25):
        completed += _attempt(delay=full * i / 20)
    # Some of the late cancellations land after the build finished: the teardown path ran too.
    assert completed < 24, "every attempt completed: the cancellation points never hit the build"


def test_timeout_zero_is_refused_before_anything_is_built() -> None:
    from testbed.errors import ScenarioError

    with pytest.raises(ScenarioError, match="greater than 0"):
        parse_scenario("name: t\ntimeout: 0\ncalls: [{name: c}]\n", "t.yaml")
