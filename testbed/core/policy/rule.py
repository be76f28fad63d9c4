"""A compiled rule: its matchers and the actions it takes on the packets it matches.

Actions on one packet, in order (docs/policy.md, "Actions"):

1. ``accept`` / ``ignore`` / ``drop`` / ``reject``: decide at once;
2. ``cut``: once the budget is spent (both directions counted), ``then`` for good;
3. ``loss`` (a lost packet takes no tokens: netem also drops before it queues), then
   ``throttle`` (police: drop the excess; shape: leave when the bucket allows), then ``delay``
   added to the release time;
4. ``block_after``: the first time the rule blocks a packet of a flow (or, for a rule that only
   impairs, the first time it matches) the configured key is blocked for T seconds.

Packets of the flow outside the action's ``direction`` are accepted by the rule, untouched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from testbed.core.craft import icmp_unreachable, packet_bytes, rst_toward_receiver, rst_toward_sender
from testbed.core.flow import Direction
from testbed.core.packet import IPProto, Packet, TCPFlag
from testbed.core.policy.bucket import TokenBucket
from testbed.core.policy.counters import RuleCounters
from testbed.core.policy.jitter import DelaySampler
from testbed.core.policy.loss import Bernoulli, GilbertElliott
from testbed.core.policy.matchers import Expiring, Matcher, StaticMatcher
from testbed.core.policy.rng import derive_rng
from testbed.core.policy.state import Context, FlowFacts, RuleFlowState
from testbed.core.policy_kinds import BlockKey, IcmpCode, RejectTo, RejectWith, ThrottleMode, ThrottlePer
from testbed.core.verdict import Action, RejectKind, Verdict

__all__ = ["CompiledRule", "CutPlan", "RejectPlan", "ResidualPlan", "ThrottlePlan", "reject_verdict"]

ORIGINAL = Direction.ORIGINAL


@dataclass(frozen=True, slots=True)
class RejectPlan:
    with_: RejectWith
    to: RejectTo
    icmp: IcmpCode


@dataclass(frozen=True, slots=True)
class ThrottlePlan:
    rate: float
    burst: float
    mode: ThrottleMode
    per: ThrottlePer
    backlog: float
    backlog_packets: int

    def bucket(self) -> TokenBucket:
        return TokenBucket(self.rate, self.burst, max_backlog=self.backlog, max_packets=self.backlog_packets)


@dataclass(frozen=True, slots=True)
class CutPlan:
    after_packets: int | None
    after_bytes: int | None
    after_seconds: float | None
    from_match: bool
    reject: RejectPlan | None  # None: silent drop


@dataclass(frozen=True, slots=True)
class ResidualPlan:
    duration: float
    key: BlockKey
    reject: RejectPlan | None  # None: silent drop
    restart: bool = False  # a new flow caught by the block restarts it (H.24)
    one_way: bool = False  # only packets towards the blocked server (I.26)


def reject_verdict(plan: RejectPlan, packet: Packet, direction: Direction, rule: str) -> Verdict:
    """REJECT with the crafted packets to inject; a fragment or a non-TCP/UDP packet we cannot
    answer properly is rejected with nothing injected (the adapter just drops it)."""
    injects: list[bytes] = []
    tcp_ok = packet.proto == IPProto.TCP and packet.tcp_seq is not None and packet.tcp_ack is not None
    use_rst = tcp_ok and plan.with_ in (RejectWith.AUTO, RejectWith.RST, RejectWith.REWRITE)
    if use_rst:
        if packet.tcp_flags is not None and packet.tcp_flags & TCPFlag.RST:
            # Never answer a RST with a RST (RFC 9293 §3.10.7.1).
            return Verdict(Action.REJECT, rule=rule, reject=RejectKind.TCP_RST)
        # ``to`` names flow ends; the sender of an ORIGINAL packet is the client.
        to_client = plan.to is not RejectTo.SERVER
        to_server = plan.to is not RejectTo.CLIENT
        sender_is_client = direction is ORIGINAL
        to_sender = to_client if sender_is_client else to_server
        to_receiver = to_server if sender_is_client else to_client
        if to_sender:
            injects.append(rst_toward_sender(packet))
        if to_receiver:
            injects.append(rst_toward_receiver(packet))
        return Verdict(Action.REJECT, rule=rule, reject=RejectKind.TCP_RST, inject=tuple(injects))
    if packet.proto in (IPProto.ICMP, IPProto.ICMPV6) or packet.frag_offset:
        # No ICMP error about an ICMP message or a non-first fragment (RFC 1122 §3.2.2).
        return Verdict(Action.REJECT, rule=rule, reject=RejectKind.ICMP_UNREACHABLE)
    injects.append(icmp_unreachable(packet_bytes(packet), code=plan.icmp))
    return Verdict(Action.REJECT, rule=rule, reject=RejectKind.ICMP_UNREACHABLE, inject=tuple(injects))


@dataclass(slots=True, eq=False)
class CompiledRule:
    index: int
    name: str
    describe: str
    static: tuple[StaticMatcher, ...]
    dynamic: tuple[Matcher, ...]
    applies: StaticMatcher | None  # the action's direction filter; None: both
    accept: bool = False
    ignore: bool = False
    drop: bool = False
    reject: RejectPlan | None = None
    cut: CutPlan | None = None
    loss: Bernoulli | GilbertElliott | None = None
    throttle: ThrottlePlan | None = None
    delay: DelaySampler | None = None
    reorder: bool = False
    sticky: bool = False
    # ``syn_from: inside`` at the top of the match: a SYN from outside exempts the flow from this
    # rule and its residual blocks for good (A.1; matchers/syn.py).
    syn_inside: bool = False
    residual: ResidualPlan | None = None
    # Monotone matchers that, once past their upper bound, can never match this flow again.
    expiring: tuple[Expiring, ...] = ()
    seed: int = 0
    counters: RuleCounters = field(default_factory=RuleCounters)
    shared: TokenBucket | None = None  # the aggregate bucket

    @property
    def uses_rng(self) -> bool:
        return self.loss is not None or (self.delay is not None and self.delay.jitter > 0)

    def static_ok(self, facts: FlowFacts, direction: Direction) -> bool:
        return all(m(facts, direction) for m in self.static)

    def matches(self, ctx: Context) -> bool:
        for m in self.dynamic:
            if not m(ctx):
                return False
        return True

    def exhausted(self, ctx: Context) -> bool:
        return any(m.over(ctx) for m in self.expiring)

    def rng(self, rs: RuleFlowState, ctx: Context) -> random.Random:
        d = ctx.dir_index
        r = rs.rngs.get(d)
        if r is None:
            k = ctx.flow.key
            r = rs.rngs[d] = derive_rng(
                self.seed, self.index, self.name, k.proto, k.a_addr, k.a_port, k.b_addr, k.b_port, d
            )
        return r

    def bucket(self, rs: RuleFlowState, ctx: Context) -> TokenBucket:
        plan = self.throttle
        assert plan is not None
        if plan.per is ThrottlePer.AGGREGATE:
            if self.shared is None:
                self.shared = plan.bucket()
            return self.shared
        slot = ctx.dir_index if plan.per is ThrottlePer.DIRECTION else 0
        b = rs.buckets.get(slot)
        if b is None:
            b = rs.buckets[slot] = plan.bucket()
        return b

    def cut_due(self, rs: RuleFlowState, ctx: Context) -> bool:
        plan = self.cut
        assert plan is not None
        f = ctx.flow
        packets = f.packets_orig + f.packets_reply
        nbytes = f.bytes_orig + f.bytes_reply
        start = f.created_at
        if plan.from_match:
            packets -= rs.first_packet - 1
            nbytes -= rs.first_bytes
            start = rs.first_time
        # A packet is cut once it would take the flow past the budget: at most N packets,
        # N bytes (IP lengths, both directions), or what arrives before N seconds, get through.
        return (
            (plan.after_packets is not None and packets > plan.after_packets)
            or (plan.after_bytes is not None and nbytes > plan.after_bytes)
            or (plan.after_seconds is not None and ctx.now - start >= plan.after_seconds)
        )
