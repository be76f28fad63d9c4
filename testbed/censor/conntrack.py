"""Conntrack accounting of the censor's offloaded flows, over ctnetlink (pyroute2's NFCTSocket).

Runs in the censor process, which already lives in the censor namespace: no ``setns`` here.
``enable_accounting`` must run before the first offloaded flow's conntrack entry exists
(accounting is attached to an entry when it is created), i.e. before traffic starts.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pyroute2 import NFCTSocket
from pyroute2.netlink.exceptions import NetlinkError

from testbed.core.offload import OFFLOAD_PROTOS, KernelCounts

ACCT_SYSCTL = Path("/proc/sys/net/netfilter/nf_conntrack_acct")
# Out-of-window TCP segments (retransmissions on a loaded link) would otherwise be INVALID to
# conntrack: no entry, so no count, while the engine counts them; liberal tracking counts them.
LIBERAL_SYSCTL = Path("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal")


class ConntrackError(OSError):
    pass


def enable_accounting() -> None:
    """Per-namespace switches: packet/byte counters on every new conntrack entry of this netns,
    and liberal TCP tracking."""
    try:
        ACCT_SYSCTL.write_text("1\n")
        LIBERAL_SYSCTL.write_text("1\n")
    except OSError as exc:
        raise ConntrackError(
            f"cannot set up conntrack accounting ({exc.filename}: {exc.strerror}); "
            "load nf_conntrack (modprobe nf_conntrack) or set `censor: {offload: false}`"
        ) from exc


def _attrs(msg: Any, *path: str) -> Any:
    return msg.get_nested(*path) if len(path) > 1 else msg.get(path[0])


def parse_entry(msg: Any) -> KernelCounts | None:
    """One dumped entry as ``KernelCounts``; None for what we never offload (other transports,
    an entry without accounting)."""
    proto = _attrs(msg, "CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_NUM")
    if proto not in OFFLOAD_PROTOS:
        return None
    ip = _attrs(msg, "CTA_TUPLE_ORIG", "CTA_TUPLE_IP")
    if ip is None:
        return None
    src = ip.get("CTA_IP_V4_SRC") or ip.get("CTA_IP_V6_SRC")
    dst = ip.get("CTA_IP_V4_DST") or ip.get("CTA_IP_V6_DST")
    sport = _attrs(msg, "CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_SRC_PORT")
    dport = _attrs(msg, "CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_DST_PORT")
    orig = msg.get("CTA_COUNTERS_ORIG")
    reply = msg.get("CTA_COUNTERS_REPLY")
    if src is None or dst is None or sport is None or dport is None or orig is None or reply is None:
        return None
    return KernelCounts(
        entry_id=int(msg.get("CTA_ID") or 0),
        proto=int(proto),
        src=ipaddress.ip_address(src).packed,
        sport=int(sport),
        dst=ipaddress.ip_address(dst).packed,
        dport=int(dport),
        packets_orig=int(orig.get("CTA_COUNTERS_PACKETS")),
        bytes_orig=int(orig.get("CTA_COUNTERS_BYTES")),
        packets_reply=int(reply.get("CTA_COUNTERS_PACKETS")),
        bytes_reply=int(reply.get("CTA_COUNTERS_BYTES")),
    )


def dump_marked(mark: int) -> list[KernelCounts]:
    """The conntrack entries of this namespace that carry ``mark`` (filtered in the kernel, so a
    censor with thousands of queued flows reads only the offloaded ones).

    Blocking, and it must not run in a thread with a running event loop: pyroute2's synchronous
    sockets drive an event loop of their own. The censor calls it through ``asyncio.to_thread``;
    a socket per call costs ~1 ms, once a second."""
    out = []
    try:
        sock = NFCTSocket()
        try:
            for msg in sock.dump(mark=mark, mark_mask=mark):
                entry = parse_entry(msg)
                if entry is not None:
                    out.append(entry)
        finally:
            sock.close()
    except (OSError, NetlinkError) as exc:
        # Without the kernel's counts the offloaded flows' counters would be short: stop.
        raise ConntrackError(f"reading conntrack accounting failed: {exc}") from exc
    return out
