"""Two network namespaces joined by a veth pair, for call tests (root only).

Nothing is ever created in the host namespace: the veth pair is created from inside namespace
``a`` with its peer placed directly in ``b``, and removing the namespaces removes the pair.
Only 198.18.0.0/15 (RFC 2544 benchmarking) addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

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
            ipr.link(
                "add", ifname="veth0", kind="veth", peer={"ifname": "veth0", "net_ns_fd": pair.b}
            )
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
