"""The policy the censor runs: ordered rules, first match wins, per packet.

Rules of this module:

1. Sans-IO: ``decide(packet, obs, now)`` returns a ``Verdict`` and never sleeps, reads a clock
   or uses the global RNG; ``now`` is the event loop's monotonic time and every random draw
   comes from a generator seeded by the scenario's seed (``rng.py``).
2. First match wins, evaluated per packet; but the rules that can match a flow at all are
   filtered once per flow and direction on its immutable facts (endpoints, transport, initiator
   side), and rules whose monotone bounds (packet index, bytes, age, time window) are passed
   are pruned, so a settled flow costs a dict lookup and a flag test.
3. No reordering unless a rule asks for it: a packet is never released before an earlier held
   packet of the same flow and direction, whatever rule (or none) decided it. Release times of
   one flow and direction strictly increase (by at least ``ORDER_EPS``), so an adapter that
   schedules with ``loop.call_at`` keeps the order even though asyncio does not promise FIFO
   among equal deadlines.
4. ``decide`` never raises on any packet the parser accepted; the hypothesis test holds it to it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from testbed.core.classify import Observation
from testbed.core.craft import rst_in_place_of
from testbed.core.flow import Direction, Flow
from testbed.core.labels import AddressList
from testbed.core.packet import IPProto, Packet, TCPFlag
from testbed.core.policy.counters import EventLog, RuleCounters
from testbed.core.policy.loss import Bernoulli, GilbertElliottState
from testbed.core.policy.matchers import Matcher
from testbed.core.policy.matchers.conforms import MAX_BYTES as CONFORMS_MAX_BYTES
from testbed.core.policy.matchers.facts import reads_frozen_facts, skippable_fact_matchers
from testbed.core.policy.residual import ResidualBlock, ResidualBlocks
from testbed.core.policy.rule import CompiledRule, RejectPlan, reject_verdict
from testbed.core.policy.state import (
    Context,
    FlowFacts,
    FlowState,
    RuleFlowState,
)
from testbed.core.policy_kinds import IcmpCode, RejectTo, RejectWith, ThrottleMode
from testbed.core.verdict import Action, Verdict
from testbed.records.censor_event import EventKind
from testbed.records.json import JsonObject

__all__ = ["ORDER_EPS", "RulePolicy"]

# 1 us: far below any delay a scenario asks for, far above float rounding at monotonic times.
ORDER_EPS = 1e-6
ORIGINAL = Direction.ORIGINAL
_DEFAULT_REJECT = RejectPlan(RejectWith.AUTO, RejectTo.BOTH, IcmpCode.PORT)


def _facts_key(flow: Flow) -> tuple[int, int, str | None, int, bool, bool]:
    """What the flow-fact matchers read, as a value that changes whenever those facts do: labels
    and fingerprints are only ever added, SNI, ALPN and the hellos set once (core/flow.py)."""
    return (
        len(flow.labels),
        len(flow.fingerprints),
        flow.sni,
        len(flow.alpn),
        flow.client_hello is None,
        flow.server_hello is None,
    )


def flow_endpoints(flow: Flow) -> tuple[str, str]:
    """The flow as the event log names it: (initiator, responder)."""
    return flow.initiator, flow.responder


class RulePolicy:
    """Implements ``testbed.core.engine.Policy``. Built by ``compile_policy``."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        *,
        inside: AddressList,
        seed: int,
        start: float = 0.0,
        inspect_packets: int = 20,
        max_events: int = 10_000,
        max_residual: int = 65_536,
        max_held: int = 4096,
    ) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.inside = inside
        self.seed = seed
        self.start = start
        self.inspect_packets = inspect_packets
        self.address_lists: dict[str, AddressList] = {}
        # The client data packets per flow that ``conforms`` matchers read (0: none kept).
        self.keep_data_packets = 0
        self._fact_matchers: dict[int, tuple[Matcher, ...]] = {}
        # Per rule, the flow-fact matchers whose falseness lets ``decide`` skip the rule until the
        # flow's facts grow (matchers/facts.py); rules without any are always evaluated.
        self._skippable: dict[int, tuple[Matcher, ...]] = {}
        for r in self.rules:
            skip = skippable_fact_matchers(r.dynamic)
            if skip:
                self._skippable[r.index] = skip
        self.events = EventLog(max_events, start)
        self.residual = ResidualBlocks(max_residual)
        self.default = RuleCounters()
        self.max_held = max_held
        self._held: list[float] = []  # release times of packets held now (a min-heap)
        self.held_peak = 0
        self.settled_packets = 0
        self.settled_flows = 0
        self.flows = 0
        # With residual blocking in the policy any flow may be blocked later, so flows settle
        # only through an ``ignore`` rule (which exempts them, documented).
        self._may_block_later = any(r.residual is not None for r in self.rules)
        self._accept_default = Verdict(Action.ACCEPT)
        self._drop_default = Verdict(Action.DROP)
        self._accept_by = {r.index: Verdict(Action.ACCEPT, rule=r.name) for r in self.rules}
        self._drop_by = {r.index: Verdict(Action.DROP, rule=r.name) for r in self.rules}

    # -- the Policy protocol ---------------------------------------------------------------------

    def decide(self, packet: Packet, obs: Observation, now: float) -> Verdict:
        flow = obs.flow
        st = flow.policy
        if st is None:
            st = self._new_flow(flow)
        if st.settled:
            # Offloadable: every later packet is accepted untouched; count it and go.
            self.settled_packets += 1
            by = st.settled_by[0 if obs.direction is ORIGINAL else 1]
            c = self.default if by is None else by.counters
            c.packets += 1
            c.bytes += packet.length
            c.accepted += 1
            return self._accept_default if by is None else self._accept_by[by.index]
        direction = obs.direction
        d = 0 if direction is ORIGINAL else 1
        if not st.handshake:
            _track_handshake(st, packet, direction)
        flags = packet.tcp_flags
        if flags is not None and flags & TCPFlag.SYN and not flags & TCPFlag.ACK:
            self._track_syn(st, direction)
        ctx = Context(packet, flow, direction, now, now - self.start, st, self.inspect_packets)
        if self.keep_data_packets and direction is ORIGINAL and packet.payload:
            _keep_data(st, flow, packet, self.keep_data_packets)
        if len(self.residual) and not st.ignored:
            block = self.residual.lookup(packet, flow, now)
            if block is not None and not (st.outside_syn and self.rules[block.rule].syn_inside):
                return self._residual(block, ctx)
        cands = st.candidates[d]
        if cands is None:
            cands = st.candidates[d] = self._candidates(st.facts, direction)
            if st.outside_syn:
                cands = st.candidates[d] = tuple(r for r in cands if not r.syn_inside)
        if not st.facts_pruned[d] and not flow.inspecting and not ctx.inspecting:
            cands = self._prune_frozen(st, d, cands, ctx)
        skippable = self._skippable
        false = st.facts_false[d]
        key = None
        if skippable and not st.facts_pruned[d]:
            key = _facts_key(flow)
            if false and key != st.facts_key[d]:
                false.clear()  # the facts grew: every rule is evaluated again
            st.facts_key[d] = key
        for rule in cands:
            idx = rule.index
            if rule.sticky and idx in st.rules:
                return self._apply(rule, ctx)
            if key is not None:
                skip = idx in false
                if not skip:
                    facts = skippable.get(idx)
                    if facts is not None:
                        for m in facts:
                            if not m(ctx):
                                # A fact matcher is false: so is the rule until the facts grow.
                                false.add(idx)
                                skip = True
                                break
                if skip:
                    # Pruned past its monotone bounds all the same, so the flow settles when
                    # it would have without the skip.
                    if rule.expiring and rule.exhausted(ctx):
                        self._prune(st, rule)
                    continue
            if rule.matches(ctx):
                return self._apply(rule, ctx)
            if rule.expiring and rule.exhausted(ctx):
                self._prune(st, rule)
        dflt = self.default
        dflt.packets += 1
        dflt.bytes += packet.length
        verdict = self._pass(ctx, dflt, None, now, False)
        if st.ignored or not self._may_block_later:
            self._settle_if_clear(flow, st, now)
        return verdict

    # -- results ---------------------------------------------------------------------------------

    def is_settled(self, flow: Flow) -> bool:
        """True when every later packet of ``flow`` will be accepted untouched: the adapter may
        offload it (``flow.policy.settled``)."""
        st = flow.policy
        return st is not None and st.settled

    def count_settled(self, flow: Flow, direction: Direction, packets: int, nbytes: int) -> None:
        """Count packets of a settled ``flow`` that the kernel forwarded without asking us
        (core/offload.py) as ``decide`` would have counted them: accepted, by the rule the flow
        settled on. Negative numbers take back packets counted twice."""
        st = flow.policy
        if st is None or not st.settled:
            return
        self.settled_packets += packets
        by = st.settled_by[0 if direction is ORIGINAL else 1]
        c = self.default if by is None else by.counters
        c.packets += packets
        c.bytes += nbytes
        c.accepted += packets

    def flow_record(self, flow: Flow) -> JsonObject:
        """Policy facts about one flow, to merge into the engine's flow record."""
        st = flow.policy
        if st is None:
            return {"rule": None, "rules": {}, "settled": False}
        return {
            "rule": st.first_rule,
            "rules": {self.rules[i].name: rs.packets for i, rs in sorted(st.rules.items())},
            "settled": st.settled,
            "held": st.held,
        }

    def summary(self, now: float | None = None) -> JsonObject:
        """The policy part of the result's ``censor`` section (JSON-ready). Its keys are merged
        into the engine's summary, so none of them may be one of the engine's (``flows``...).
        ``now`` (the end of the run) retires the held packets released by then, so ``held.now``
        is the count at that moment, not at the last hold."""
        if now is not None:
            self._release_due(now)
        out: JsonObject = {
            "seed": self.seed,
            "rules": [{"name": r.name, "action": r.describe, **r.counters.as_dict()} for r in self.rules],
            "default": self.default.as_dict(),
            "flows_evaluated": self.flows,
            "settled": {"flows": self.settled_flows, "packets": self.settled_packets},
            "held": {"now": len(self._held), "peak": self.held_peak, "max": self.max_held},
            "residual": {
                "triggered": self.residual.triggered,
                "entries": len(self.residual),
                "evicted": self.residual.evicted,
            },
            "events": [e.to_json() for e in self.events.entries],
            "events_dropped": self.events.dropped,
        }
        if now is not None:
            out["residual"]["active"] = self.residual.active(now)
        return out

    # -- internals -------------------------------------------------------------------------------

    def _new_flow(self, flow: Flow) -> FlowState:
        inside = self.inside
        facts = FlowFacts(
            flow.key.proto,
            flow.initiator_addr,
            flow.initiator_port,
            flow.responder_addr,
            flow.responder_port,
            flow.initiator_addr in inside,
            flow.responder_addr in inside,
        )
        st = FlowState(facts)
        st.candidates = [self._candidates(facts, ORIGINAL), self._candidates(facts, Direction.REPLY)]
        flow.policy = st
        self.flows += 1
        if not self._may_block_later:
            self._settle_if_clear(flow, st, self.start)
        return st

    def _candidates(self, facts: FlowFacts, direction: Direction) -> tuple[CompiledRule, ...]:
        # CompiledRule.static_ok, inlined: twice per new flow for every rule, the bulk of a new
        # flow's policy cost under flow churn (a generator per rule cost more than the matchers).
        out = []
        for r in self.rules:
            for m in r.static:
                if not m(facts, direction):
                    break
            else:
                out.append(r)
        return tuple(out)

    def _track_syn(self, st: FlowState, direction: Direction) -> None:
        inside = st.facts.sender_inside(direction)
        if st.first_syn_inside is None:
            st.first_syn_inside = inside
        if not inside and not st.outside_syn:
            # A.1: a SYN from outside un-blocks: the rules keyed on an inside SYN let go of the flow.
            st.outside_syn = True
            for i, cands in enumerate(st.candidates):
                if cands is not None:
                    st.candidates[i] = tuple(r for r in cands if not r.syn_inside)

    def _prune_frozen(
        self, st: FlowState, d: int, cands: tuple[CompiledRule, ...], ctx: Context
    ) -> tuple[CompiledRule, ...]:
        """Inspection is over: drop the rules whose flow-fact matchers are false for good."""
        st.facts_pruned[d] = True
        keep = []
        for rule in cands:
            facts = self._fact_matchers.get(rule.index)
            if facts is None:
                facts = self._fact_matchers[rule.index] = tuple(m for m in rule.dynamic if reads_frozen_facts(m))
            if (rule.sticky and rule.index in st.rules) or all(m(ctx) for m in facts):
                keep.append(rule)
        pruned = st.candidates[d] = tuple(keep)
        return pruned

    def _prune(self, st: FlowState, rule: CompiledRule) -> None:
        for i, cands in enumerate(st.candidates):
            if cands is not None and rule in cands:
                st.candidates[i] = tuple(r for r in cands if r is not rule)

    def _settle_if_clear(self, flow: Flow, st: FlowState, now: float) -> None:
        """Settle the flow if no rule can ever act on it again and none of its packets is held."""
        if st.settled or st.last_until[0] > now or st.last_until[1] > now:
            return
        if not st.ignored:
            for d, cands in enumerate(st.candidates):
                if cands is None:
                    return
                if not cands:
                    continue
                first = cands[0]
                # The first candidate accepts every packet whatever happens; settle once it has
                # matched (so its first match is counted and logged).
                if not first.accept or first.dynamic or first.index not in st.rules:
                    return
                st.settled_by[d] = first
        st.settled = True
        self.settled_flows += 1

    def _pass(
        self,
        ctx: Context,
        c: RuleCounters,
        rule: CompiledRule | None,
        until: float,
        reorder: bool,
        rewrite: bytes | None = None,
    ) -> Verdict:
        """Let the packet go at ``until`` (at once if <= now), keeping its flow's order."""
        st = ctx.state
        d = ctx.dir_index
        now = ctx.now
        last = st.last_until[d]
        if not reorder and last > now and until < last + ORDER_EPS:
            until = last + ORDER_EPS
        name = rule.name if rule is not None else None
        if until > now:
            held = self._release_due(now)
            if len(held) >= self.max_held:
                # Better a counted drop here than the kernel's silent one (docs/policy.md).
                c.drop("queue-full")
                return self._drop_default if rule is None else self._drop_by[rule.index]
            heapq.heappush(held, until)
            if len(held) > self.held_peak:
                self.held_peak = len(held)
            if not reorder:
                st.last_until[d] = until
            c.delayed += 1
            st.held += 1
            if until - now > c.max_hold_s:
                c.max_hold_s = until - now
            return Verdict(Action.HOLD, until=until, rule=name, rewrite=rewrite)
        c.accepted += 1
        if rewrite is not None:
            return Verdict(Action.ACCEPT, rule=name, rewrite=rewrite)
        if rule is None:
            return self._accept_default
        return self._accept_by[rule.index]

    def _release_due(self, now: float) -> list[float]:
        """Forget the held packets due by ``now``: the adapter releases every packet whose time
        has come before it hands over the next one (testbed/censor/nfqueue.py), so what is
        left is exactly what it holds."""
        held = self._held
        while held and held[0] <= now:
            heapq.heappop(held)
        return held

    def _first_match(self, rule: CompiledRule, ctx: Context) -> RuleFlowState:
        flow = ctx.flow
        packets = flow.packets_orig + flow.packets_reply
        nbytes = flow.bytes_orig + flow.bytes_reply
        rs = RuleFlowState(packets, nbytes - ctx.packet.length, ctx.now)
        ctx.state.rules[rule.index] = rs
        rule.counters.matched_flows += 1
        if ctx.state.first_rule is None:
            ctx.state.first_rule = rule.name
        self.events.add(
            ctx.now, EventKind.MATCH, rule.name, flow_endpoints(flow),
            transport=flow.key.transport, direction=ctx.direction.value, packet=packets,
            labels=sorted(flow.labels), sni=flow.sni,
        )  # fmt: skip
        return rs

    def _trigger(self, rule: CompiledRule, rs: RuleFlowState, ctx: Context) -> None:
        plan = rule.residual
        if plan is None or rs.triggered:
            return
        rs.triggered = True
        reject = plan.reject is not None
        restart = plan.duration if plan.restart else None
        self.residual.add(plan.key, ctx.flow, ctx.now + plan.duration, rule.index, reject, restart, plan.one_way)
        self.events.add(
            ctx.now, EventKind.BLOCK, rule.name, flow_endpoints(ctx.flow),
            key=plan.key.value, duration_s=plan.duration, then="reject" if reject else "drop",
        )  # fmt: skip

    def _reject(self, rule: CompiledRule, plan: RejectPlan, ctx: Context, cause: str) -> Verdict:
        c = rule.counters
        if plan.with_ is RejectWith.REWRITE:
            p = ctx.packet
            if p.proto == IPProto.TCP and p.tcp_seq is not None and p.tcp_ack is not None and not p.is_fragment:
                if ctx.direction is ORIGINAL:
                    # TSPU SNI-I lets the client's packets through and turns the server's reply
                    # into an RST/ACK (censor-behaviors.md A.2).
                    return self._pass(ctx, c, rule, ctx.now, False)
                c.rewritten += 1
                c.reject(cause)
                return Verdict(Action.ACCEPT, rule=rule.name, rewrite=rst_in_place_of(p))
            c.drop(cause)
            return self._drop_by[rule.index]
        c.reject(cause)
        return reject_verdict(plan, ctx.packet, ctx.direction, rule.name)

    def _residual(self, block: ResidualBlock, ctx: Context) -> Verdict:
        rule = self.rules[block.rule]
        st = ctx.state
        if not st.residual_logged:
            st.residual_logged = True
            self.events.add(
                ctx.now, EventKind.RESIDUAL, rule.name, flow_endpoints(ctx.flow),
                remaining_s=round(block.until - ctx.now, 6),
            )  # fmt: skip
        rule.counters.packets += 1
        rule.counters.bytes += ctx.packet.length
        if block.reject:
            plan = (rule.residual.reject if rule.residual is not None else None) or _DEFAULT_REJECT
            return self._reject(rule, plan, ctx, "residual")
        rule.counters.drop("residual")
        return self._drop_by[rule.index]

    def _apply(self, rule: CompiledRule, ctx: Context) -> Verdict:
        st = ctx.state
        rs = st.rules.get(rule.index)
        if rs is None:
            rs = self._first_match(rule, ctx)
        rs.packets += 1
        c = rule.counters
        c.packets += 1
        packet = ctx.packet
        c.bytes += packet.length
        now = ctx.now
        if rule.accept:
            verdict = self._pass(ctx, c, rule, now, False)
            if not self._may_block_later:
                self._settle_if_clear(ctx.flow, st, now)
            return verdict
        if rule.ignore:
            # A DPI that gave up on the flow (B.9): nothing is evaluated for it again, residual
            # blocks included; it settles as soon as no earlier packet of it is held.
            st.candidates = [(), ()]
            st.ignored = True
            self.events.add(now, EventKind.IGNORE, rule.name, flow_endpoints(ctx.flow))
            verdict = self._pass(ctx, c, rule, now, False)
            st.settled_by = [rule, rule]
            self._settle_if_clear(ctx.flow, st, now)
            return verdict
        if rule.applies is not None and not rule.applies(st.facts, ctx.direction):
            return self._pass(ctx, c, rule, now, False)
        if rule.drop:
            self._trigger(rule, rs, ctx)
            c.drop("drop")
            return self._drop_by[rule.index]
        if rule.reject is not None:
            verdict = self._reject(rule, rule.reject, ctx, "reject")
            if verdict.action is not Action.ACCEPT or verdict.rewrite is not None:
                # The residual block starts at the first packet the rule blocks or rewrites, not
                # at its match: SNI-I lets the ClientHello through, and a block started there
                # would drop the server's reply before it could be rewritten into the RST (A.2).
                self._trigger(rule, rs, ctx)
            return verdict
        cut = rule.cut
        if cut is not None and (rs.cut or rule.cut_due(rs, ctx)):
            if not rs.cut:
                rs.cut = True
                f = ctx.flow
                self.events.add(
                    now, EventKind.CUT, rule.name, flow_endpoints(f),
                    packets=f.packets_orig + f.packets_reply - 1,
                    bytes=f.bytes_orig + f.bytes_reply - packet.length,
                    age_s=round(now - f.created_at, 6),
                )  # fmt: skip
            self._trigger(rule, rs, ctx)
            if cut.reject is not None:
                return self._reject(rule, cut.reject, ctx, "cut")
            c.drop("cut")
            return self._drop_by[rule.index]
        until = now
        if rule.loss is not None:
            rng = rule.rng(rs, ctx)
            loss = rule.loss
            if isinstance(loss, Bernoulli):
                lost = loss.lost(rng)
            else:
                ge = rs.ge.get(ctx.dir_index)
                if ge is None:
                    ge = rs.ge[ctx.dir_index] = GilbertElliottState()
                lost = loss.lost(rng, ge)
            if lost:
                self._impair_trigger(rule, rs, ctx)
                c.drop("loss")
                return self._drop_by[rule.index]
        if rule.throttle is not None:
            bucket = rule.bucket(rs, ctx)
            if rule.throttle.mode is ThrottleMode.POLICE:
                if not bucket.police(packet.length, now):
                    self._impair_trigger(rule, rs, ctx)
                    c.drop("policed")
                    return self._drop_by[rule.index]
            else:
                release = bucket.shape(packet.length, now)
                if release is None:
                    self._impair_trigger(rule, rs, ctx)
                    c.drop("backlog")
                    return self._drop_by[rule.index]
                until = release
        if rule.delay is not None:
            until += rule.delay.sample(rule.rng(rs, ctx))
        self._impair_trigger(rule, rs, ctx)
        return self._pass(ctx, c, rule, until, rule.reorder)

    def _impair_trigger(self, rule: CompiledRule, rs: RuleFlowState, ctx: Context) -> None:
        # A rule that only impairs triggers its residual block on its first match.
        if rule.residual is not None and rule.cut is None:
            self._trigger(rule, rs, ctx)


def _keep_data(st: FlowState, flow: Flow, packet: Packet, keep: int) -> None:
    """Append a new client data packet's payload (not a retransmission: the flow's data count
    moved) to the flow's first data, up to ``keep`` packets and ``MAX_BYTES``."""
    n = flow.data_packets(ORIGINAL)
    if st.first_data_n >= keep or n <= st.first_data_n:
        return
    room = CONFORMS_MAX_BYTES - len(st.first_data)
    st.first_data += packet.payload[: max(room, 0)]
    st.first_data_n = n
    st.first_data_ends.append(len(st.first_data))


def _track_handshake(st: FlowState, packet: Packet, direction: Direction) -> None:
    if packet.proto != IPProto.TCP:
        if direction is not ORIGINAL:
            st.handshake = True  # both sides have spoken
        return
    flags = packet.tcp_flags
    if flags is None:
        return
    if direction is ORIGINAL:
        if flags & TCPFlag.SYN and not flags & TCPFlag.ACK:
            st.syn = True
        elif flags & TCPFlag.ACK and st.synack and not flags & (TCPFlag.SYN | TCPFlag.RST):
            st.handshake = True
    elif flags & TCPFlag.SYN and flags & TCPFlag.ACK and st.syn:
        st.synack = True
