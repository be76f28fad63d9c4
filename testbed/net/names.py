"""Names of everything a run creates in the kernel, and how to recognise them again.

Every kernel object carries the project prefix and the run id, so parallel runs never collide
and ``testbed clean`` can tell, from the name alone, which objects are testbed's and which run
made them.  Nothing without the prefix is ever touched.

- network namespaces: ``tb-<rid>-<node>``  (namespace names have no length limit)
- veth ends:          ``tb<rid>n<i>`` in the node, ``tb<rid>c<i>`` in the censor, and for a node
                      behind a NAT ``tb<rid>i<i>``/``tb<rid>o<i>`` (inner/outer) in the NAT
                      namespace ``tb-<rid>-<node>-nat``: at most 12 characters, inside Linux's
                      15-character IFNAMSIZ limit
- run directory:      ``/run/testbed/<rid>/`` holds the owner record, sockets and per-run files
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

PREFIX = "tb"
RUN_ROOT = Path("/run/testbed")
RUN_ID_LEN = 6
IFNAMSIZ_MAX = 15

_RUN_ID_RE = re.compile(r"^[0-9a-f]{6}$")
NETNS_RE = re.compile(r"^tb-(?P<rid>[0-9a-f]{6})-(?P<node>[a-z0-9][a-z0-9_-]*)$")
IFNAME_RE = re.compile(r"^tb(?P<rid>[0-9a-f]{6})[ncio]\d{1,3}$")


def new_run_id() -> str:
    """A fresh run id: random, and not the id of a run directory that exists now (a concurrent
    run that picks the same id in the same instant still loses at ``registered_run``'s mkdir)."""
    while True:
        rid = secrets.token_hex(RUN_ID_LEN // 2)
        if not run_dir(rid).exists():
            return rid


def is_run_id(value: str) -> bool:
    return bool(_RUN_ID_RE.match(value))


def netns_name(run_id: str, node: str) -> str:
    return f"{PREFIX}-{run_id}-{node}"


def node_ifname(run_id: str, link_index: int) -> str:
    name = f"{PREFIX}{run_id}n{link_index}"
    assert len(name) <= IFNAMSIZ_MAX, name
    return name


def censor_ifname(run_id: str, link_index: int) -> str:
    name = f"{PREFIX}{run_id}c{link_index}"
    assert len(name) <= IFNAMSIZ_MAX, name
    return name


def nat_inner_ifname(run_id: str, link_index: int) -> str:
    return f"{PREFIX}{run_id}i{link_index}"


def nat_outer_ifname(run_id: str, link_index: int) -> str:
    return f"{PREFIX}{run_id}o{link_index}"


def run_dir(run_id: str) -> Path:
    return RUN_ROOT / run_id
