"""Two network namespaces joined by a veth pair, for call tests (root only).

Nothing is ever created in the host namespace: the veth pair is created from inside namespace
``a`` with its peer placed directly in ``b``, and removing the namespaces removes the pair.
Only 198.18.0.0/15 (RFC 2544 benchmarking) addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, netns

NAME_PREFIX = "tbt"
ADDRESS_A = "198.18.250.1"
ADDRESS_B = "198.18.250.2"
PREFIX_LEN = 30


@dataclass(frozen=True, slots=True)
class NamespacePair:
    a: str
    b: str
    address_a: str = ADDRESS_A
    address_b: str = ADDRESS_B


def _configure(name: str, ifname: str, address: str) -> None:
    with IPRoute(netns=name) as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
        (idx,) = ipr.link_lookup(ifname=ifname)
        ipr.addr("add", index=idx, address=address, prefixlen=PREFIX_LEN)
        ipr.link("set", index=idx, state="up")


@contextlib.contextmanager
def namespace_pair() -> Iterator[NamespacePair]:
    """Create ``tbt<hex>a`` and ``tbt<hex>b`` joined by a veth pair; remove both on exit."""
    run_id = secrets.token_hex(3)
    pair = NamespacePair(a=f"{NAME_PREFIX}{run_id}a", b=f"{NAME_PREFIX}{run_id}b")
    created: list[str] = []
    try:
        for name in (pair.a, pair.b):
            netns.create(name)
            created.append(name)
        with IPRoute(netns=pair.a) as ipr:
            ipr.link("add", ifname="veth0", kind="veth", peer={"ifname": "veth0", "net_ns_fd": pair.b})
        _configure(pair.a, "veth0", pair.address_a)
        _configure(pair.b, "veth0", pair.address_b)
        yield pair
    finally:
        # Removing a namespace destroys its veth end, and with it the peer.
        for name in reversed(created):
            with contextlib.suppress(OSError):
                netns.remove(name)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces")


@pytest.fixture
def netns_pair() -> Iterator[NamespacePair]:
    require_root()
    with namespace_pair() as pair:
        yield pair


# -- a whole censored network (namespaces, NFQUEUE censor, services) for run_calls tests ---------


@dataclass(frozen=True, slots=True)
class CensoredNetwork:
    """What ``censored_network`` built: the topology plan (its ``NodePlan``s satisfy
    ``testbed.calls.NodeInfo``), the running services, the run directory, and the censor."""

    plan: Any
    services: list[Any]
    workdir: Path
    censor: Any

    @property
    def nodes(self) -> dict[str, Any]:
        return {n.name: n for n in self.plan.nodes}


@contextlib.asynccontextmanager
async def censored_network(scenario_yaml: str) -> AsyncIterator[CensoredNetwork]:
    """The runner's set-up, minus the calls: ``scenario_yaml``'s nodes, services and censor.

    The scenario text needs a ``calls:`` entry only because a scenario must have one; the test
    passes its own ``CallSpec``s to ``run_calls``.  Everything is undone on exit, as in a run.
    """
    from testbed.censor.control import running_censor
    from testbed.censor.policy_setup import policy_config
    from testbed.net.names import new_run_id
    from testbed.net.runs import registered_run
    from testbed.net.topology import build_topology, plan_topology
    from testbed.scenario.loader import parse_scenario
    from testbed.services.run import running_services

    scenario = parse_scenario(scenario_yaml)
    run_id = new_run_id()
    async with contextlib.AsyncExitStack() as stack:
        workdir = stack.enter_context(registered_run(run_id, purpose="test"))
        plan = plan_topology(scenario, run_id)
        await stack.enter_async_context(build_topology(plan))
        policy = policy_config(scenario, plan, Path.cwd())
        censor = await stack.enter_async_context(running_censor(plan, scenario.censor, workdir, seed=0, policy=policy))
        services: list[Any] = []
        if any(spec.services for spec in scenario.nodes.values()):
            services = await stack.enter_async_context(running_services(plan, scenario, workdir))
        yield CensoredNetwork(plan=plan, services=services, workdir=workdir, censor=censor)
    # Scoped to this run's names: other runs may come and go on the same host meanwhile.
    left = [ns for ns in netns.listnetns() if ns in plan.all_netns]
    assert not left, f"namespaces left behind: {left}"
    assert not workdir.exists(), f"run directory left behind: {workdir}"


def call_specs(*entries: dict[str, Any]) -> list[Any]:
    """``calls:`` entries as the scenario loader would validate them."""
    from testbed.scenario.call_schema import CallSpec

    return [CallSpec.model_validate(e) for e in entries]
