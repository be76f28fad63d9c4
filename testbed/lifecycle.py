"""One run lifecycle, shared by ``testbed run`` (runner.py) and ``testbed up`` (session.py).

A :class:`RunPlan` says what to run (frozen, checked before anything is made); a
:class:`Lifecycle` makes, in order, everything the run owns and undoes it in reverse on every
exit path (success, error, timeout, Ctrl-C, SIGTERM turned into cancellation)::

    async with Lifecycle(plan) as live:      # run dir, topology, [capture], censor, [services]
        ...                                  # run: calls + probes; up: wait for `down`

Each thing is a :class:`Step`: an async context manager that makes its part, records it on the
:class:`Parts` being assembled, and undoes it on exit. The steps are entered on one
``AsyncExitStack``; then the *watchers* the steps registered (the censor's ``watch()``, later
the apps' supervisors) run in a ``TaskGroup`` around the body, so a censor that dies mid-run
cancels the body and its ``CensorError`` is what the caller sees.

User processes in nodes ("apps", ``testbed/apps.py``, started after the services and the
censor, before calls and probes) are the ``APPS`` step, appended by :func:`default_steps` after
``SERVICES``; it adds each process to ``Parts.processes`` (a :class:`NodeProcess`) and its
supervisor to ``Parts.watchers``, and both `run` and `up` get them with no other change.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from testbed.apps import RunningApp, running_apps
from testbed.censor.capture import CaptureHandle, running_capture
from testbed.censor.control import running_censor
from testbed.censor.policy_setup import PolicyCompileError, PolicyConfig, build_policy, policy_config
from testbed.errors import ScenarioError, TestbedError
from testbed.net.names import new_run_id
from testbed.net.runs import registered_run
from testbed.net.topology import Topology, TopologyPlan, build_topology, plan_topology
from testbed.records.app import AppInfo, AppResult
from testbed.records.json import JsonObject
from testbed.scenario.loader import LoadedScenario
from testbed.scenario.model import Scenario
from testbed.services.run import RunningService, running_services

__all__ = [
    "APPS",
    "CAPTURE",
    "CENSOR",
    "RUN_DIR",
    "SERVICES",
    "TOPOLOGY",
    "Censor",
    "Lifecycle",
    "LiveRun",
    "NodeProcess",
    "Parts",
    "Purpose",
    "RunPlan",
    "Step",
    "StepsFor",
    "checked_policy_config",
    "default_steps",
    "first_testbed_error",
    "insert_after",
]

Progress = Callable[[str], None]
Watcher = Callable[[], Coroutine[Any, Any, None]]
"""Returns never while what it watches is healthy (or once it was stopped on purpose); raises
a ``TestbedError`` saying what died."""


class Purpose(enum.Enum):
    """Why the run exists; recorded in its ``owner.json`` (``testbed clean`` shows it)."""

    RUN = "run"
    UP = "up"


def checked_policy_config(scenario: Scenario, plan: TopologyPlan, file: Path, seed: int) -> PolicyConfig:
    """The censor's policy config (JSON for the censor process), compiled once here so mistakes
    surface before any setup."""
    config = policy_config(scenario, plan, file.resolve().parent)
    try:
        build_policy(config, seed=seed, start=0.0)
    except PolicyCompileError as exc:
        raise ScenarioError(str(exc), file=str(file), key="censor") from None
    return config


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one run will make: everything decided, nothing made yet. Build with :meth:`create`."""

    loaded: LoadedScenario
    run_id: str
    seed: int
    purpose: Purpose
    topology: TopologyPlan
    policy: PolicyConfig
    """The censor's policy config (handed to the censor process)."""
    capture_dir: Path | None = None
    """Also write a pcapng of the censor's links here."""
    logs_dir: Path | None = None
    """Keep a copy of each app's log here (the run directory goes with the run)."""

    @classmethod
    def create(
        cls,
        loaded: LoadedScenario,
        *,
        purpose: Purpose,
        seed: int | None = None,
        capture_dir: Path | None = None,
        run_id: str | None = None,
        logs_dir: Path | None = None,
    ) -> RunPlan:
        """Plan the run; raises ScenarioError (policy that does not compile) before anything exists."""
        rid = new_run_id() if run_id is None else run_id
        used_seed = loaded.scenario.seed if seed is None else seed
        topology = plan_topology(loaded.scenario, rid)
        policy = checked_policy_config(loaded.scenario, topology, loaded.path, used_seed)
        return cls(loaded, rid, used_seed, purpose, topology, policy, capture_dir, logs_dir)

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario


class Censor(Protocol):
    """What a run needs of its censor (``testbed.censor.control.CensorHandle``)."""

    @property
    def t0(self) -> float | None:
        """The censor's time origin (CLOCK_MONOTONIC): its event times count from here."""

    async def watch(self) -> None:
        """Returns never while the censor is healthy (or once stopped); raises CensorError if it dies."""

    async def stop(self) -> JsonObject:
        """Stop it and return its summary (a JSON document: counters, events, flows)."""

    @property
    def final(self) -> JsonObject | None:
        """Its summary once it has stopped, also when the run failed before :meth:`stop` (it is
        stopped on the way out then); None before, or when it wrote none."""


class NodeProcess(Protocol):
    """A process the lifecycle started in a node and supervises (an app: ``testbed.apps``): it has
    a name, runs in ``node``, and its supervisor is one of ``Parts.watchers``."""

    @property
    def name(self) -> str: ...

    @property
    def node(self) -> str: ...

    def record(self) -> AppResult:
        """What it did (the result's ``apps`` entry); complete once the run stopped it."""

    def info(self) -> AppInfo:
        """What ``testbed up`` lists: name, node, pid, log."""


@dataclass(slots=True)
class Parts:
    """What the run has made so far; each step fills in its part. After a failure it still says
    what was made (the runner reports a capture's summary even when the run failed)."""

    plan: RunPlan
    progress: Progress
    workdir: Path | None = None
    network: Topology | None = None
    capture: CaptureHandle | None = None
    censor: Censor | None = None
    services: list[RunningService] = field(default_factory=list)
    processes: list[NodeProcess] = field(default_factory=list)
    apps_origin: float | None = None
    """CLOCK_MONOTONIC when the apps step began (the apps' times count from it)."""
    watchers: list[Watcher] = field(default_factory=list)

    def live(self) -> LiveRun:
        if self.workdir is None or self.network is None or self.censor is None:
            made = ((RUN_DIR, self.workdir), (TOPOLOGY, self.network), (CENSOR, self.censor))
            raise RuntimeError(f"the run's steps did not make: {', '.join(n for n, p in made if p is None)}")
        return LiveRun(
            plan=self.plan,
            workdir=self.workdir,
            network=self.network,
            censor=self.censor,
            services=tuple(self.services),
            capture=self.capture,
            processes=tuple(self.processes),
        )


@dataclass(frozen=True, slots=True)
class LiveRun:
    """A run whose network, censor and services are up."""

    plan: RunPlan
    workdir: Path
    """The run directory (``/run/testbed/<rid>/``): configs, sockets, logs."""
    network: Topology
    censor: Censor
    services: tuple[RunningService, ...]
    capture: CaptureHandle | None
    processes: tuple[NodeProcess, ...]

    @property
    def topology(self) -> TopologyPlan:
        return self.plan.topology

    @property
    def addresses(self) -> Mapping[str, tuple[str, ...]]:
        """Each node's addresses, the one the rest of the network sees first (behind a NAT, the
        private one second); ``censor``: its address on each node's link."""
        out: dict[str, tuple[str, ...]] = {"censor": tuple(n.censor_address for n in self.topology.nodes)}
        for n in self.topology.nodes:
            out[n.name] = (n.public_address,) + ((n.address,) if n.address != n.public_address else ())
        return out

    @property
    def certificates(self) -> Mapping[tuple[str, int], str]:
        """(node, port) -> the PEM certificate its HTTPS/QUIC service presents."""
        return {(s.node, s.port): s.cert for s in self.services if s.cert is not None}


StepEnter = Callable[[Parts], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a run owns: ``enter(parts)`` makes it and records it on ``parts``; leaving the
    context manager undoes it."""

    name: str
    enter: StepEnter


RUN_DIR = "run directory"
TOPOLOGY = "topology"
CAPTURE = "capture"
CENSOR = "censor"
SERVICES = "services"
APPS = "apps"


@contextlib.asynccontextmanager
async def _run_dir(parts: Parts) -> AsyncIterator[None]:
    with registered_run(parts.plan.run_id, purpose=parts.plan.purpose.value) as workdir:
        parts.workdir = workdir
        yield


@contextlib.asynccontextmanager
async def _topology(parts: Parts) -> AsyncIterator[None]:
    parts.progress(f"building network (run {parts.plan.run_id})")
    async with build_topology(parts.plan.topology) as network:
        parts.network = network
        yield


@contextlib.asynccontextmanager
async def _capture(parts: Parts) -> AsyncIterator[None]:
    plan = parts.plan
    assert plan.capture_dir is not None
    plan.capture_dir.mkdir(parents=True, exist_ok=True)
    path = plan.capture_dir / f"{plan.scenario.name}-{plan.run_id}.pcapng"
    async with running_capture(plan.topology.censor_netns, [n.censor_ifname for n in plan.topology.nodes], path) as cap:
        parts.capture = cap
        yield


@contextlib.asynccontextmanager
async def _censor(parts: Parts) -> AsyncIterator[None]:
    plan = parts.plan
    assert parts.workdir is not None
    parts.progress("starting censor")
    async with running_censor(
        plan.topology, plan.scenario.censor, parts.workdir, seed=plan.seed, policy=plan.policy
    ) as censor:
        parts.censor = censor
        parts.watchers.append(censor.watch)
        yield


@contextlib.asynccontextmanager
async def _services(parts: Parts) -> AsyncIterator[None]:
    assert parts.workdir is not None
    parts.progress("starting services")
    async with running_services(parts.plan.topology, parts.plan.scenario, parts.workdir) as services:
        parts.services = list(services)
        yield


@contextlib.asynccontextmanager
async def _apps(parts: Parts) -> AsyncIterator[None]:
    assert parts.workdir is not None
    plan = parts.plan
    names = [a.name for spec in plan.scenario.nodes.values() for a in spec.apps]
    parts.progress(f"starting apps: {', '.join(names)}")
    started: list[RunningApp] = []
    # Each app is on `parts.processes` as soon as it starts: a run that fails while starting a
    # later one still reports the earlier ones (and their logs).
    parts.processes = started  # type: ignore[assignment]  # list is invariant; RunningApp is a NodeProcess
    parts.apps_origin = origin = time.monotonic()
    keep = None if plan.logs_dir is None else (plan.logs_dir, f"{plan.scenario.name}-{plan.run_id}-")
    async with running_apps(
        plan.scenario, plan.topology, parts.services, parts.workdir, started, origin, keep=keep
    ) as apps:
        parts.watchers.extend(a.watch for a in apps)
        yield


StepsFor = Callable[[RunPlan], Sequence[Step]]
"""How a caller chooses a plan's steps: ``default_steps``, or fakes in tests."""


def default_steps(plan: RunPlan) -> tuple[Step, ...]:
    """Everything a run of ``plan`` owns, in the order it is made (undone in reverse)."""
    steps = [Step(RUN_DIR, _run_dir), Step(TOPOLOGY, _topology)]
    if plan.capture_dir is not None:
        steps.append(Step(CAPTURE, _capture))
    steps.append(Step(CENSOR, _censor))
    if any(spec.services for spec in plan.scenario.nodes.values()):
        steps.append(Step(SERVICES, _services))
    if any(spec.apps for spec in plan.scenario.nodes.values()):
        steps.append(Step(APPS, _apps))
    return tuple(steps)


def insert_after(steps: Sequence[Step], name: str, step: Step) -> tuple[Step, ...]:
    """``steps`` with ``step`` right after the one called ``name`` (made after it, undone before it)."""
    for i, s in enumerate(steps):
        if s.name == name:
            return (*steps[: i + 1], step, *steps[i + 1 :])
    raise ValueError(f"no step {name!r} in {[s.name for s in steps]}")


def first_testbed_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Structured concurrency reports failures as groups; users want the one that mattered:
    the first TestbedError (depth first), else a lone exception, else the group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = first_testbed_error(exc)
            if isinstance(inner, TestbedError):
                return inner
        elif isinstance(exc, TestbedError):
            return exc
    if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
        return group.exceptions[0]
    return group


@contextlib.asynccontextmanager
async def _unwrapped(cm: AbstractAsyncContextManager[None]) -> AsyncIterator[None]:
    """``cm``, with a group raised out of it turned into the error that mattered: the censor's and
    the services' blocks hold TaskGroups (for their output readers) that wrap whatever passes
    through, and the steps made before them (and the caller) must see the CensorError itself."""
    try:
        async with cm:
            yield
    except BaseExceptionGroup as group:
        raise first_testbed_error(group) from None


class Lifecycle:
    """``async with Lifecycle(plan) as live``: make every step's part in order, run their
    watchers around the body, undo everything in reverse on the way out. ``parts`` says what
    was made, also after a failure."""

    def __init__(self, plan: RunPlan, *, steps: Sequence[Step] | None = None, progress: Progress | None = None) -> None:
        self.plan = plan
        self.steps = tuple(default_steps(plan) if steps is None else steps)
        self.parts = Parts(plan, progress or (lambda _msg: None))
        self._cm: AbstractAsyncContextManager[LiveRun] | None = None

    async def __aenter__(self) -> LiveRun:
        if self._cm is not None:
            raise RuntimeError("a Lifecycle is entered once")
        self._cm = self._live()
        return await self._cm.__aenter__()

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._cm is not None
        return await self._cm.__aexit__(et, exc, tb)

    @contextlib.asynccontextmanager
    async def _live(self) -> AsyncIterator[LiveRun]:
        async with contextlib.AsyncExitStack() as stack:
            for step in self.steps:
                await stack.enter_async_context(_unwrapped(step.enter(self.parts)))
            live = self.parts.live()
            # Inside the stack, so each step's exit sees the error that mattered, not a group.
            try:
                async with asyncio.TaskGroup() as tg:
                    watchers = [tg.create_task(w()) for w in self.parts.watchers]
                    try:
                        yield live
                    finally:
                        # Healthy watchers never return: the body is done, so are they.
                        for task in watchers:
                            task.cancel()
            except BaseExceptionGroup as group:
                raise first_testbed_error(group) from None
