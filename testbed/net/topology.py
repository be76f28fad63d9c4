"""Build and tear down a run's network: one namespace per node, each joined to the censor.

Describe, then apply: ``plan_topology`` is pure and turns a scenario into names and addresses;
``build_topology`` is the async context manager that makes exactly that in the kernel and undoes
exactly that on exit, whatever happened in between.

Shape (a star around the censor, which forwards and inspects everything between nodes)::

    caller --veth-- censor --veth-- callee
                      |
                      +--veth-- relay (a TURN service), servers, ...
                      +--veth-- nat --veth-- node behind a NAT

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space, never routed on the internet):
link *i* is 198.18.i.0/24 with the censor at .1 and the node (or its NAT) at .2; behind a NAT the
node is 198.19.i.2 and the NAT's inside 198.19.i.1.  Nodes route only 198.18.0.0/15 via their
gateway and have no default route, and no namespace has a link to the host, so nothing a run does
can reach the host's uplink.

IPv6 (``ip: v6`` or ``dual``): one ULA /48 per run (RFC 4193: ``fd`` + a 40-bit global
ID), the global ID being the first 40 bits of SHA-256 of ``testbed-ula:<run id>``, so a run's
prefix is stable for its id and two runs almost never share one.  Link *i* is subnet *i* (hex)
of it, a /64, with the censor at ::1 and the node (or its NAT) at ::2, mirroring 198.18.i.1/.2;
behind a NAT the inner link is subnet 0x100 + *i* (mirroring 198.19.i.0/24), NAT inside ::1,
node ::2.  There is no NAT66: NAT types are IPv4 behaviours, the NAT namespace only routes IPv6,
so a NATed node's public IPv6 address is its own.  Nodes route only the run's /48 via their
gateway (no default route, as in IPv4); the censor reaches the links behind NATs through a
route per inner /64 via the NAT's outside address.  Addresses are added with ``nodad`` (duplicate
address detection would hold them "tentative", unusable, for a second or more, and the plan
already guarantees uniqueness).  ``ip: v6`` configures no IPv4 address at all.

Sysctls (``disable_ipv6=0`` everywhere, ``forwarding=1`` in NAT namespaces) are written from a
short-lived process inside each namespace (``testbed.net.sysctl``) before the links exist, so
every veth is born with IPv6 on; the censor turns its own forwarding on, in both families,
together with its queue rules (``testbed.censor.main``), so nothing is forwarded uninspected.

All netlink work goes through pyroute2's ``AsyncIPRoute(netns=...)``, which opens its socket in
the target namespace from a short-lived child process; this process never switches namespaces.
Veth pairs are created from inside one namespace with their peer placed straight into the other,
so no interface ever appears in the host's own namespace, even for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute, netns

from testbed.errors import TopologyError
from testbed.net import ethtool, names
from testbed.net.process import netns_process
from testbed.net.strays import end_processes_in_netns
from testbed.scenario.common import Side
from testbed.scenario.model import IpMode, NatType, Scenario

SUPERNET = ipaddress.ip_network("198.18.0.0/15")
ULA = ipaddress.IPv6Network("fd00::/8")
"""RFC 4193 locally assigned unique local addresses: every run's IPv6 /48 lies inside."""
CENSOR = "censor"
_NAT_SUBNET = 0x100
"""Subnet ID offset of the links behind a NAT (link i: i, behind its NAT: 0x100 + i; i <= 200)."""


def ula_prefix(run_id: str) -> ipaddress.IPv6Network:
    """The run's /48: ``fd`` + the first 40 bits of SHA-256 of ``testbed-ula:<run id>``.

    RFC 4193 §3.2 wants the global ID pseudo-random so that prefixes do not collide; a hash of
    the run id is, and it is also stable, so a run's addresses can be recomputed from its id
    (``testbed clean``, reports)."""
    global_id = int.from_bytes(hashlib.sha256(f"testbed-ula:{run_id}".encode()).digest()[:5], "big")
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48))


def _subnet64(prefix: ipaddress.IPv6Network, subnet_id: int) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((int(prefix.network_address) | (subnet_id << 64), 64))


def _host(subnet: ipaddress.IPv6Network, host: int) -> str:
    return str(subnet.network_address + host)


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """A veth pair: ``a`` end in namespace ``a_netns``, ``b`` end in ``b_netns``; a /24 between."""

    a_netns: str
    a_ifname: str
    a_address: str
    b_netns: str
    b_ifname: str
    b_address: str
    prefixlen: int = 24
    a_address6: str | None = None
    """IPv6 addresses of the two ends (None: the run's network is IPv4-only)."""
    b_address6: str | None = None
    prefixlen6: int = 64


@dataclass(frozen=True, slots=True)
class NatPlan:
    type: NatType
    netns: str
    inner_ifname: str
    inner_address: str
    outer_ifname: str
    outer_address: str
    inner_address6: str | None = None
    outer_address6: str | None = None


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    side: Side
    netns: str
    link_index: int
    ifname: str
    address: str
    """The node's own address (behind a NAT: its private one)."""
    gateway: str
    censor_ifname: str
    censor_address: str
    public_address: str
    """What the rest of the network sees: ``address``, or the NAT's outside address."""
    nat: NatPlan | None = None
    address6: str | None = None
    """The node's own IPv6 address (None: IPv4-only network); behind a NAT too, as there is no NAT66."""
    gateway6: str | None = None
    censor_address6: str | None = None

    @property
    def public_address6(self) -> str | None:
        """What the rest of the network sees over IPv6: the node's own address (no NAT66)."""
        return self.address6


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """One static route: ``dst`` (a CIDR) via ``gateway`` inside ``netns``."""

    netns: str
    dst: str
    gateway: str


@dataclass(frozen=True, slots=True)
class TopologyPlan:
    run_id: str
    censor_netns: str
    nodes: tuple[NodePlan, ...]
    ip: IpMode = IpMode.V4
    """Which families the network carries; the IPv4 fields are planned whatever it is (a ``v6``
    run would configure none of them)."""
    prefix6: str | None = None
    """The run's ULA /48 (``ip: v6`` or ``dual``)."""

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def all_netns(self) -> tuple[str, ...]:
        out = [self.censor_netns]
        for n in self.nodes:
            out.append(n.netns)
            if n.nat is not None:
                out.append(n.nat.netns)
        return tuple(out)

    @property
    def links(self) -> tuple[LinkPlan, ...]:
        out = []
        for n in self.nodes:
            if n.nat is None:
                out.append(
                    LinkPlan(
                        n.netns,
                        n.ifname,
                        n.address,
                        self.censor_netns,
                        n.censor_ifname,
                        n.censor_address,
                        a_address6=n.address6,
                        b_address6=n.censor_address6,
                    )
                )
            else:
                out.append(
                    LinkPlan(
                        n.netns,
                        n.ifname,
                        n.address,
                        n.nat.netns,
                        n.nat.inner_ifname,
                        n.nat.inner_address,
                        a_address6=n.address6,
                        b_address6=n.nat.inner_address6,
                    )
                )
                out.append(
                    LinkPlan(
                        n.nat.netns,
                        n.nat.outer_ifname,
                        n.nat.outer_address,
                        self.censor_netns,
                        n.censor_ifname,
                        n.censor_address,
                        a_address6=n.nat.outer_address6,
                        b_address6=n.censor_address6,
                    )
                )
        return tuple(out)

    @property
    def routes(self) -> tuple[RoutePlan, ...]:
        """Every static route the run adds, IPv4 then IPv6 (none of a family the run lacks)."""
        out: list[RoutePlan] = []
        if self.ip.has_v4:
            for n in self.nodes:
                out.append(RoutePlan(n.netns, str(SUPERNET), n.gateway))
                if n.nat is not None:
                    out.append(RoutePlan(n.nat.netns, str(SUPERNET), n.censor_address))
        if self.prefix6 is not None:
            for n in self.nodes:
                assert n.gateway6 is not None and n.censor_address6 is not None
                out.append(RoutePlan(n.netns, self.prefix6, n.gateway6))
                if n.nat is not None:
                    assert n.nat.outer_address6 is not None and n.address6 is not None
                    out.append(RoutePlan(n.nat.netns, self.prefix6, n.censor_address6))
                    # No NAT66: the censor forwards to the node's own address, behind the NAT.
                    inner = ipaddress.IPv6Network((n.address6, 64), strict=False)
                    out.append(RoutePlan(self.censor_netns, str(inner), n.nat.outer_address6))
        return tuple(out)

    @property
    def sysctls(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """Per namespace, the ``(key, value)`` sysctls written before any link exists (IPv6 runs only).

        ``disable_ipv6=0`` on ``all`` and ``default``: a host with
        ``net.core.devconf_inherit_init_net=1`` and IPv6 disabled would otherwise hand its setting
        to new namespaces.  The censor's forwarding is not here: it goes on with its queue rules."""
        if not self.ip.has_v6:
            return ()
        base = (("net.ipv6.conf.all.disable_ipv6", "0"), ("net.ipv6.conf.default.disable_ipv6", "0"))
        out = []
        for ns in self.all_netns:
            is_nat = any(n.nat is not None and n.nat.netns == ns for n in self.nodes)
            out.append((ns, base + ((("net.ipv6.conf.all.forwarding", "1"),) if is_nat else ())))
        return tuple(out)

    def addresses(self, side: Side | None = None) -> list[str]:
        """Public addresses of the nodes (optionally of one side)."""
        return [n.public_address for n in self.nodes if side is None or n.side is side]

    def addresses6(self, side: Side | None = None) -> list[str]:
        """Public IPv6 addresses of the nodes (optionally of one side); empty on an IPv4-only network."""
        return [
            n.public_address6 for n in self.nodes if n.public_address6 is not None and (side is None or n.side is side)
        ]


def plan_topology(scenario: Scenario, run_id: str) -> TopologyPlan:
    v6 = scenario.ip.has_v6
    prefix = ula_prefix(run_id) if v6 else None
    nodes = []
    for i, (name, spec) in enumerate(scenario.nodes.items(), start=1):
        # 198.18.i.0/24 and 198.19.i.0/24 for i in 1..200 stay inside 198.18.0.0/15.
        public = f"198.18.{i}.2"
        nat = None
        address, gateway = public, f"198.18.{i}.1"
        outer6 = censor6 = None
        if prefix is not None:
            link6 = _subnet64(prefix, i)
            censor6, outer6 = _host(link6, 1), _host(link6, 2)
        address6, gateway6 = outer6, censor6
        if spec.nat is not None:
            inner6 = None
            if prefix is not None:
                inner = _subnet64(prefix, _NAT_SUBNET + i)
                inner6, address6 = _host(inner, 1), _host(inner, 2)
                gateway6 = inner6
            nat = NatPlan(
                type=spec.nat.type,
                netns=names.netns_name(run_id, f"{name}-nat"),
                inner_ifname=names.nat_inner_ifname(run_id, i),
                inner_address=f"198.19.{i}.1",
                outer_ifname=names.nat_outer_ifname(run_id, i),
                outer_address=public,
                inner_address6=inner6,
                outer_address6=outer6,
            )
            address, gateway = f"198.19.{i}.2", nat.inner_address
        nodes.append(
            NodePlan(
                name=name,
                side=spec.side,
                netns=names.netns_name(run_id, name),
                link_index=i,
                ifname=names.node_ifname(run_id, i),
                address=address,
                gateway=gateway,
                censor_ifname=names.censor_ifname(run_id, i),
                censor_address=f"198.18.{i}.1",
                public_address=public,
                nat=nat,
                address6=address6,
                gateway6=gateway6,
                censor_address6=censor6,
            )
        )
    return TopologyPlan(
        run_id=run_id,
        censor_netns=names.netns_name(run_id, CENSOR),
        nodes=tuple(nodes),
        ip=scenario.ip,
        prefix6=None if prefix is None else str(prefix),
    )


@dataclass(frozen=True, slots=True)
class Topology:
    plan: TopologyPlan
    offloads: dict[str, dict[str, bool]]
    """Offload state read back after disabling, per ``netns/ifname``."""


@contextlib.asynccontextmanager
async def build_topology(plan: TopologyPlan) -> AsyncIterator[Topology]:
    async with contextlib.AsyncExitStack() as stack:
        for ns in plan.all_netns:
            # Creation and ownership are one step: the removal is on the stack before the first
            # await, so a cancellation at any point (``timeout`` elapsing, Ctrl-C) unwinds it.
            creation = _start_creating_netns(ns)
            stack.push_async_callback(_remove_created_netns, ns, creation)
            await asyncio.shield(creation)
        try:
            offloads: dict[str, dict[str, bool]] = {}
            for ns, settings in plan.sysctls:
                await _write_sysctls(ns, settings)
            for link in plan.links:
                await _make_link(link, v4=plan.ip.has_v4)
            await _bring_up_lo(plan.all_netns)
            if plan.ip.has_v6:
                await _wait_for_carrier(plan.links)
            for route in plan.routes:
                await _route(route)
            if plan.ip.has_v4:
                for node in plan.nodes:
                    if node.nat is not None:
                        await _configure_nat(node)
            for link in plan.links:
                for ns, ifname in ((link.a_netns, link.a_ifname), (link.b_netns, link.b_ifname)):
                    offloads[f"{ns}/{ifname}"] = await asyncio.to_thread(_disable_offloads, ns, ifname)
        except OSError as exc:  # pyroute2's NetlinkError is an OSError
            raise TopologyError(f"could not build the network: {exc}") from exc
        yield Topology(plan=plan, offloads=offloads)


def _start_creating_netns(name: str) -> asyncio.Future[None]:
    """``netns.create`` in a worker thread.  A thread cannot be cancelled: cancelling whoever
    awaits it only stops the waiting, and the namespace appears anyway, later.  So the caller
    awaits it shielded and the removal awaits the thread itself before deciding."""
    if name in netns.listnetns():
        raise TopologyError(f"network namespace {name!r} already exists")
    return asyncio.get_running_loop().run_in_executor(None, _create_netns, name)


def _create_netns(name: str) -> None:
    try:
        netns.create(name)
    except OSError as exc:
        raise TopologyError(f"cannot create network namespace {name!r}: {exc}") from exc


async def _remove_created_netns(name: str, creation: asyncio.Future[None]) -> None:
    """Remove ``name`` if, and only if, this run created it (a failed creation owns nothing:
    the name may be someone else's).  Waits for the creating thread first, so a namespace it
    creates after a cancellation is still removed (only a second cancellation during that wait
    of milliseconds can leave it, to ``testbed clean``)."""
    try:
        await asyncio.shield(creation)
    except TopologyError:
        return
    _remove_netns(name)


def _remove_netns(name: str) -> None:
    # What the run started is stopped by then; anything left (a background process started with
    # `testbed exec`) would keep the namespace alive after its name is gone.
    end_processes_in_netns(name)
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


IFA_F_NODAD = 0x02
"""linux/if_addr.h: add the IPv6 address without duplicate address detection (usable at once)."""


async def _make_link(link: LinkPlan, *, v4: bool = True) -> None:
    async with AsyncIPRoute(netns=link.a_netns) as ipr:
        await ipr.link(
            "add", ifname=link.a_ifname, kind="veth", peer={"ifname": link.b_ifname, "net_ns_fd": link.b_netns}
        )
    for ns, ifname, address, address6 in (
        (link.a_netns, link.a_ifname, link.a_address, link.a_address6),
        (link.b_netns, link.b_ifname, link.b_address, link.b_address6),
    ):
        async with AsyncIPRoute(netns=ns) as ipr:
            (idx,) = await ipr.link_lookup(ifname=ifname)
            if v4:
                await ipr.addr("add", index=idx, address=address, prefixlen=link.prefixlen)
            if address6 is not None:
                await ipr.addr(
                    "add",
                    index=idx,
                    address=address6,
                    prefixlen=link.prefixlen6,
                    family=socket.AF_INET6,
                    flags=IFA_F_NODAD,
                )
            await ipr.link("set", index=idx, state="up")


CARRIER_TIMEOUT_S = 10.0


async def _wait_for_carrier(links: tuple[LinkPlan, ...]) -> None:
    """Wait until every veth end reports carrier (operstate UP).

    IPv6 joins an address's solicited-node group only once the link has carrier (addrconf waits
    for it), and the kernel announces carrier through linkwatch, up to a second after ``up``;
    a neighbour solicitation sent before that goes unanswered and the first packet waits for
    the retransmission (RFC 4861 RetransTimer, 1 s).  Measured: a first ``ping -6`` right after
    building took ~1000 ms, 0.1 ms once carrier was up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CARRIER_TIMEOUT_S
    for link in links:
        for ns, ifname in ((link.a_netns, link.a_ifname), (link.b_netns, link.b_ifname)):
            async with AsyncIPRoute(netns=ns) as ipr:
                while True:
                    (msg,) = tuple(await ipr.link("get", ifname=ifname))
                    if msg.get("operstate") == "UP":
                        break
                    if loop.time() > deadline:
                        raise TopologyError(f"{ns}/{ifname} has no carrier {CARRIER_TIMEOUT_S:g} s after coming up")
                    await asyncio.sleep(0.05)


async def _route(route: RoutePlan) -> None:
    dst = ipaddress.ip_network(route.dst)
    family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    async with AsyncIPRoute(netns=route.netns) as ipr:
        await ipr.route(
            "add", dst=str(dst.network_address), dst_len=dst.prefixlen, gateway=route.gateway, family=family
        )


async def _write_sysctls(ns: str, settings: tuple[tuple[str, str], ...]) -> None:
    """/proc/sys/net is per namespace and only writable from inside it: a short-lived child does it."""
    argv = [sys.executable, "-m", "testbed.net.sysctl", *(f"{k}={v}" for k, v in settings)]
    async with netns_process(ns, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) as proc:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    if proc.returncode != 0:
        raise TopologyError(f"could not set sysctls in {ns}: {out.decode(errors='replace').strip()}")


async def _bring_up_lo(namespaces: tuple[str, ...]) -> None:
    for ns in namespaces:
        async with AsyncIPRoute(netns=ns) as ipr:
            (idx,) = await ipr.link_lookup(ifname="lo")
            await ipr.link("set", index=idx, state="up")


async def _configure_nat(node: NodePlan) -> None:
    """Forwarding + iptables NAT rules inside the NAT namespace (they vanish with it)."""
    nat = node.nat
    assert nat is not None
    argv = [sys.executable, "-m", "testbed.net.nat", nat.type.value, nat.outer_ifname, nat.outer_address, node.address]
    async with netns_process(nat.netns, argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) as proc:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    if proc.returncode != 0:
        raise TopologyError(
            f"could not set up the {nat.type.value} NAT for {node.name}: {out.decode(errors='replace').strip()}"
        )


def _disable_offloads(ns: str, ifname: str) -> dict[str, bool]:
    sock = netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return ethtool.disable_offloads(sock, ifname)
    finally:
        sock.close()
