"""Settled flows leave the queue: which flows may, and how the kernel's counts come back.

A flow whose verdict can no longer change is marked (the NFQUEUE adapter sets a packet mark that
the censor's firewall saves as a connmark) and the kernel forwards the rest of it without asking
the engine. Its counters then come from conntrack accounting (``nf_conntrack_acct``), read by the
adapter, and ``OffloadTable.merge`` adds what the kernel forwarded to exactly the counters the
engine and the policy would have updated had those packets been queued, so a result is the same
with offload on or off (docs/policy.md, "Offload").

Rules of this module:

1. ``offloadable`` follows the policy's own ``settled`` decision (core/policy/runtime.py): every
   later packet is accepted untouched, no packet of the flow is held, and no rule can act on it
   again (throttle, cut, delay, loss, time windows, residual blocking never settle). On top of
   that the classifier must be done with the flow, or its labels/SNI would stop short of what a
   queued run reports.
2. Sans-IO: conntrack entries arrive as ``KernelCounts`` values; nothing here reads netlink.
3. Merging is idempotent: a merge sets the flow's counters to what conntrack counted (kernel
   totals of every conntrack entry the flow had), so merging the same dump twice changes
   nothing, and a packet that was counted by conntrack but still waiting in the queue at one
   merge (the engine counts it again later) is taken back at the next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from testbed.core.engine import CensorEngine
from testbed.core.flow import Direction, Flow, FlowKey
from testbed.core.policy.runtime import RulePolicy
from testbed.core.verdict import Action
from testbed.records.json import JsonObject

__all__ = ["OFFLOAD_PROTOS", "KernelCounts", "OffloadTable", "offloadable"]

# Conntrack tuples carry ports for these only; other transports (ICMP ids, GRE...) stay queued.
OFFLOAD_PROTOS = frozenset({6, 17})


def offloadable(flow: Flow) -> bool:
    """True when the kernel may forward the rest of ``flow`` without the engine (rule 1)."""
    st = flow.policy
    return (
        st is not None
        and st.settled
        and not flow.inspecting
        and flow.ended is None
        and flow.key.proto in OFFLOAD_PROTOS
        and len(flow.key.a_addr) == 4  # IPv4: the conntrack dump (pyroute2's) reads AF_INET entries only
        and not flow.fragments
    )


@dataclass(frozen=True, slots=True)
class KernelCounts:
    """One conntrack entry's accounting, in conntrack's own orientation (``src`` sent first)."""

    entry_id: int
    proto: int
    src: bytes
    sport: int
    dst: bytes
    dport: int
    packets_orig: int
    bytes_orig: int
    packets_reply: int
    bytes_reply: int

    @property
    def key(self) -> FlowKey:
        a, b = (self.src, self.sport), (self.dst, self.dport)
        lo, hi = (a, b) if a <= b else (b, a)
        return FlowKey(self.proto, lo[0], lo[1], hi[0], hi[1])


@dataclass(slots=True)
class _Synced:
    """What was merged for one offloaded flow, per engine direction (0 original, 1 reply)."""

    flow: Flow
    entry_id: int | None = None
    # Totals of the conntrack entries this flow had before the current one (an entry that timed
    # out while the engine still kept the flow; the next packet made a new one).
    base_packets: list[int] = field(default_factory=lambda: [0, 0])
    base_bytes: list[int] = field(default_factory=lambda: [0, 0])
    # The current entry's totals at the last merge.
    last_packets: list[int] = field(default_factory=lambda: [0, 0])
    last_bytes: list[int] = field(default_factory=lambda: [0, 0])
    # What the merges added in all (the kernel-only packets and bytes of this flow).
    added_packets: int = 0
    added_bytes: int = 0


class OffloadTable:
    """The flows handed to the kernel, and the merge of their conntrack counts into the engine."""

    def __init__(self, engine: CensorEngine) -> None:
        self.engine = engine
        self._flows: dict[FlowKey, _Synced] = {}
        self.merges = 0
        self.unmatched = 0  # marked conntrack entries with no offloaded flow (the engine forgot it)

    def __len__(self) -> int:
        return len(self._flows)

    def claim(self, flow: Flow) -> bool:
        """Called for a packet of ``flow`` the engine accepted: True if the packet should carry
        the offload mark (the flow is offloadable; it is recorded the first time)."""
        if not offloadable(flow):
            return False
        if flow.key not in self._flows:
            self._flows[flow.key] = _Synced(flow)
        return True

    def merge(self, entries: Iterable[KernelCounts], now: float) -> None:
        """Bring every offloaded flow's counters up to the kernel's (rule 3). A flow the kernel
        forwarded packets of since the last merge is seen at ``now`` (conntrack keeps no time
        of last packet), which also keeps it from timing out idle in the engine's table."""
        self.merges += 1
        for e in entries:
            synced = self._flows.get(e.key)
            if synced is None:
                self.unmatched += 1
                continue
            flow = synced.flow
            if flow.ended is not None:
                # Its record is written (idle timeout or eviction in the engine's table): what the
                # kernel forwarded afterwards has nowhere to go.
                continue
            if e.src == flow.initiator_addr and e.sport == flow.initiator_port:
                totals = ((e.packets_orig, e.bytes_orig), (e.packets_reply, e.bytes_reply))
            else:
                totals = ((e.packets_reply, e.bytes_reply), (e.packets_orig, e.bytes_orig))
            if synced.entry_id is not None and synced.entry_id != e.entry_id:
                for d in (0, 1):
                    synced.base_packets[d] += synced.last_packets[d]
                    synced.base_bytes[d] += synced.last_bytes[d]
            synced.entry_id = e.entry_id
            for d, direction in ((0, Direction.ORIGINAL), (1, Direction.REPLY)):
                packets, nbytes = totals[d]
                synced.last_packets[d] = packets
                synced.last_bytes[d] = nbytes
                have_p = flow.packets_orig if d == 0 else flow.packets_reply
                have_b = flow.bytes_orig if d == 0 else flow.bytes_reply
                dp = synced.base_packets[d] + packets - have_p
                db = synced.base_bytes[d] + nbytes - have_b
                if dp or db:
                    self._count(flow, direction, dp, db)
                    synced.added_packets += dp
                    synced.added_bytes += db
                    if dp > 0 and now > flow.last_seen:
                        flow.last_seen = now

    def _count(self, flow: Flow, direction: Direction, packets: int, nbytes: int) -> None:
        """Count ``packets`` accepted packets of ``flow`` (negative: take back) everywhere the
        engine counts a queued packet of a settled flow."""
        engine = self.engine
        if direction is Direction.ORIGINAL:
            flow.packets_orig += packets
            flow.bytes_orig += nbytes
        else:
            flow.packets_reply += packets
            flow.bytes_reply += nbytes
        verdicts = flow.verdicts
        if verdicts is None:
            verdicts = flow.verdicts = Counter()
        verdicts[Action.ACCEPT] += packets
        stats = engine.stats
        stats.packets += packets
        stats.bytes += nbytes
        stats.actions[Action.ACCEPT] += packets
        engine.classifier.packets += packets
        policy = engine.policy
        if isinstance(policy, RulePolicy):
            policy.count_settled(flow, direction, packets, nbytes)

    def summary(self) -> JsonObject:
        """The ``offload`` part of the censor summary."""
        flows = self._flows.values()
        return {
            "offloaded_flows": len(self._flows),
            "kernel_packets": sum(s.added_packets for s in flows),
            "kernel_bytes": sum(s.added_bytes for s in flows),
            "merges": self.merges,
            "unmatched_entries": self.unmatched,
        }
