"""Build and tear down a run's network: one namespace per node, each joined to the censor.

Describe, then apply: ``plan_topology`` is pure and turns a scenario into names and addresses;
``build_topology`` is the async context manager that makes exactly that in the kernel and undoes
exactly that on exit, whatever happened in between.

Shape (a star around the censor, which forwards and inspects everything between nodes)::

    caller --veth-- censor --veth-- callee
                      |
                     veth-- relay / server nodes (later)

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space, never routed on the internet):
link *i* is 198.18.i.0/24 with the censor at .1 and the node at .2.  Nodes route only
198.18.0.0/15 via the censor and have no default route, and no namespace has a link to the host,
so nothing a run does can reach the host's uplink.

All netlink work goes through pyroute2's ``AsyncIPRoute(netns=...)``, which opens its socket in
the target namespace from a short-lived child process; this process never switches namespaces.
Veth pairs are created from inside the node namespace with their peer placed straight into the
censor namespace, so no interface ever appears in the host's own namespace, even for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute, netns

from testbed.errors import TopologyError
from testbed.net import ethtool, names
from testbed.scenario.model import Scenario, Side

SUPERNET = ipaddress.ip_network("198.18.0.0/15")
CENSOR = "censor"


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    side: Side
    netns: str
    link_index: int
    ifname: str
    address: str
    censor_ifname: str
    censor_address: str
    prefixlen: int = 24


@dataclass(frozen=True, slots=True)
class TopologyPlan:
    run_id: str
    censor_netns: str
    nodes: tuple[NodePlan, ...]

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def all_netns(self) -> tuple[str, ...]:
        return (self.censor_netns, *(n.netns for n in self.nodes))


def plan_topology(scenario: Scenario, run_id: str) -> TopologyPlan:
    nodes = []
    for i, (name, spec) in enumerate(scenario.nodes.items(), start=1):
        # 198.18.i.0/24 for i in 1..255 stays inside 198.18.0.0/15; the model caps nodes at 200.
        nodes.append(
            NodePlan(
                name=name,
                side=spec.side,
                netns=names.netns_name(run_id, name),
                link_index=i,
                ifname=names.node_ifname(run_id, i),
                address=f"198.18.{i}.2",
                censor_ifname=names.censor_ifname(run_id, i),
                censor_address=f"198.18.{i}.1",
            )
        )
    return TopologyPlan(run_id=run_id, censor_netns=names.netns_name(run_id, CENSOR), nodes=tuple(nodes))


@dataclass(frozen=True, slots=True)
class Topology:
    plan: TopologyPlan
    offloads: dict[str, dict[str, bool]]
    """Offload state read back after disabling, per ``netns/ifname``."""


@contextlib.asynccontextmanager
async def build_topology(plan: TopologyPlan) -> AsyncIterator[Topology]:
    async with contextlib.AsyncExitStack() as stack:
        for ns in plan.all_netns:
            await _create_netns(ns)
            stack.callback(_remove_netns, ns)
        try:
            offloads: dict[str, dict[str, bool]] = {}
            for node in plan.nodes:
                await _link_node(plan, node)
            await _bring_up_lo(plan.all_netns)
            for node in plan.nodes:
                offloads[f"{node.netns}/{node.ifname}"] = await asyncio.to_thread(
                    _disable_offloads, node.netns, node.ifname
                )
                offloads[f"{plan.censor_netns}/{node.censor_ifname}"] = await asyncio.to_thread(
                    _disable_offloads, plan.censor_netns, node.censor_ifname
                )
        except OSError as exc:  # pyroute2's NetlinkError is an OSError
            raise TopologyError(f"could not build the network: {exc}") from exc
        yield Topology(plan=plan, offloads=offloads)


async def _create_netns(name: str) -> None:
    if name in netns.listnetns():
        raise TopologyError(
            f"network namespace {name!r} already exists",
        )
    try:
        await asyncio.to_thread(netns.create, name)
    except OSError as exc:
        raise TopologyError(f"cannot create network namespace {name!r}: {exc}") from exc


def _remove_netns(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


async def _link_node(plan: TopologyPlan, node: NodePlan) -> None:
    async with AsyncIPRoute(netns=node.netns) as ipr:
        await ipr.link(
            "add",
            ifname=node.ifname,
            kind="veth",
            peer={"ifname": node.censor_ifname, "net_ns_fd": plan.censor_netns},
        )
        (idx,) = await ipr.link_lookup(ifname=node.ifname)
        await ipr.addr("add", index=idx, address=node.address, prefixlen=node.prefixlen)
        await ipr.link("set", index=idx, state="up")
        await ipr.route(
            "add",
            dst=str(SUPERNET.network_address),
            dst_len=SUPERNET.prefixlen,
            gateway=node.censor_address,
        )
    async with AsyncIPRoute(netns=plan.censor_netns) as ipr:
        (idx,) = await ipr.link_lookup(ifname=node.censor_ifname)
        await ipr.addr("add", index=idx, address=node.censor_address, prefixlen=node.prefixlen)
        await ipr.link("set", index=idx, state="up")


async def _bring_up_lo(namespaces: tuple[str, ...]) -> None:
    for ns in namespaces:
        async with AsyncIPRoute(netns=ns) as ipr:
            (idx,) = await ipr.link_lookup(ifname="lo")
            await ipr.link("set", index=idx, state="up")


def _disable_offloads(ns: str, ifname: str) -> dict[str, bool]:
    sock = netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return ethtool.disable_offloads(sock, ifname)
    finally:
        sock.close()
