"""Policy IR -> running policy: resolve names and lists, build matchers and action plans.

The input is ``testbed.core.policy_ir.PolicyIR`` (plain data; ``testbed.scenario.policy_ir``
compiles a validated scenario into it). Address entries may be literal addresses/CIDRs, node
names (resolved by ``resolve_node``, the runner's knowledge of the topology) or named lists:
inline in ``lists:``, a file (read through ``read_file``, so this stays free of I/O), or a list
shipped with testbed (``whatsapp``, ``telegram``) when the scenario does not declare one of that
name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable

from testbed.core.labels import AddressList, Label, shipped_address_lists
from testbed.core.policy.jitter import DelaySampler
from testbed.core.policy.loss import Bernoulli, GilbertElliott
from testbed.core.policy.matchers import Expiring, Matcher, StaticAsDynamic, StaticMatcher
from testbed.core.policy.matchers.conforms import ConformsMatch, Protocol
from testbed.core.policy.matchers.connections import ConnectionKey, ConnectionsMatch
from testbed.core.policy.matchers.encrypted import FetThresholds, FullyEncryptedMatch
from testbed.core.policy.matchers.endpoints import (
    AddressMatch,
    DirectionMatch,
    End,
    FamilyMatch,
    InitiatorMatch,
    PortMatch,
    TransportMatch,
)
from testbed.core.policy.matchers.fingerprint import FingerprintMatch, GroupsMatch
from testbed.core.policy.matchers.logic import AllOf, AnyOf, Not
from testbed.core.policy.matchers.names import AlpnMatch, EchMatch, LabelsMatch, SniMatch
from testbed.core.policy.matchers.payload import BytesMatch
from testbed.core.policy.matchers.progress import (
    AgeMatch,
    DataPacketMatch,
    FlowBytesMatch,
    HandshakeMatch,
    PacketIndexMatch,
    PayloadSizeMatch,
    Range,
    SizeMatch,
    TimeMatch,
)
from testbed.core.policy.matchers.quic import PortOrderMatch, WholeHelloInFirstInitialMatch
from testbed.core.policy.matchers.syn import SynFromMatch
from testbed.core.policy.rng import derive_seed
from testbed.core.policy.rule import CompiledRule, CutPlan, RejectPlan, ResidualPlan, ThrottlePlan
from testbed.core.policy.runtime import RulePolicy
from testbed.core.policy.window import TimeWindow
from testbed.core.policy_ir import AddressesIR, MatchIR, PolicyIR, RangeIR, RejectIR, RuleIR, is_node_name
from testbed.core.policy_kinds import (
    BlockDirection,
    CountFrom,
    Distribution,
    Family,
    HelloKind,
    LossModel,
    PacketDirection,
    RejectWith,
    Then,
    ThrottleMode,
    Transport,
)
from testbed.core.policy_regex import compile_regex

__all__ = ["PolicyCompileError", "compile_policy", "estimate_max_hold"]


class PolicyCompileError(ValueError):
    """A spec that validated but cannot be built: an unknown node, list or label; a bad file."""


_DEFAULT_REJECT = RejectIR()
_PROTOS = {Transport.TCP: (6,), Transport.UDP: (17,), Transport.ICMP: (1, 58)}


class _Compiler:
    def __init__(
        self,
        spec: PolicyIR,
        resolve_node: Callable[[str], list[str]],
        read_file: Callable[[str], str] | None,
        known_labels: Collection[str] | None,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.keep_data_packets = 0  # the most client data packets a ``conforms`` matcher reads
        self.list_specs = {ls.name: ls for ls in spec.lists}
        self.resolve_node = resolve_node
        self.read_file = read_file
        self._lists: dict[str, AddressList] = {}
        self._shipped: dict[str, AddressList] | None = None
        labels = set(known_labels) if known_labels is not None else {str(v) for v in Label}
        self.known_labels = labels | set(self.list_specs) | {"whatsapp", "telegram"}

    # -- addresses -------------------------------------------------------------------------------

    def _add_entry(self, al: AddressList, entry: str, where: str) -> None:
        if is_node_name(entry):
            try:
                addrs = self.resolve_node(entry)
            except (KeyError, LookupError, ValueError) as exc:
                raise PolicyCompileError(f"{where}: unknown node {entry!r}") from exc
            if not addrs:
                raise PolicyCompileError(f"{where}: node {entry!r} has no addresses")
            for a in addrs:
                al.add(a)
        else:
            al.add(entry)

    def named_list(self, name: str, where: str) -> AddressList:
        got = self._lists.get(name)
        if got is not None:
            return got
        spec = self.list_specs.get(name)
        if spec is None:
            if self._shipped is None:
                self._shipped = shipped_address_lists()
            shipped = self._shipped.get(name)
            if shipped is None:
                known = sorted(set(self.list_specs) | set(self._shipped))
                raise PolicyCompileError(f"{where}: unknown address list {name!r} (known: {', '.join(known)})")
            self._lists[name] = shipped
            return shipped
        al = AddressList(name, source="scenario")
        for entry in spec.entries:
            self._add_entry(al, entry, f"lists.{name}")
        if spec.file is not None:
            if self.read_file is None:
                raise PolicyCompileError(f"lists.{name}: a file list needs read_file to compile")
            try:
                text = self.read_file(spec.file)
                parsed = AddressList.from_text(name, text, spec.file)
            except OSError as exc:
                raise PolicyCompileError(f"lists.{name}: cannot read {spec.file}: {exc}") from exc
            except ValueError as exc:
                raise PolicyCompileError(f"lists.{name}: {spec.file}: {exc}") from exc
            al = al.merged(parsed)
        self._lists[name] = al
        return al

    def addresses(self, spec: AddressesIR, where: str) -> AddressList:
        al = AddressList(where)
        for entry in spec.addresses:
            self._add_entry(al, entry, where)
        for name in spec.lists:
            al = al.merged(self.named_list(name, where))
        return al

    # -- matchers --------------------------------------------------------------------------------

    def match(self, m: MatchIR, where: str) -> tuple[list[StaticMatcher], list[Matcher], list[Expiring]]:
        """(static, dynamic, expiring) matchers of one match block."""
        static: list[StaticMatcher] = []
        dynamic: list[Matcher] = []
        expiring: list[Expiring] = []
        if m.transport:
            static.append(TransportMatch(frozenset(p for t in m.transport for p in _PROTOS[t])))
        if m.family is not None:
            static.append(FamilyMatch(m.family is Family.V6))
        for end, spec in ((End.CLIENT, m.src), (End.SERVER, m.dst), (End.EITHER, m.addr)):
            if spec is not None:
                static.append(AddressMatch(self.addresses(spec, f"{where}.{end}"), end))
        for end, ports in ((End.CLIENT, m.src_port), (End.SERVER, m.dst_port), (End.EITHER, m.port)):
            if ports is not None:
                static.append(PortMatch(ports, end))
        if m.initiator_inside is not None:
            static.append(InitiatorMatch(m.initiator_inside))
        if m.direction is not None and m.direction is not PacketDirection.BOTH:
            static.append(DirectionMatch(m.direction))
        if m.quic is not None and m.quic.src_port_above_dst:
            static.append(PortOrderMatch())
        # Dynamic matchers, cheapest first.
        if m.syn_from_inside is not None:
            dynamic.append(SynFromMatch(m.syn_from_inside))
        if m.time is not None:
            w = m.time
            tm = TimeMatch(TimeWindow(w.start, w.until, w.period, w.active))
            dynamic.append(tm)
            if m.time.until is not None:
                expiring.append(tm)
        for rng_spec, cls in ((m.packet_index, PacketIndexMatch), (m.data_packet, DataPacketMatch),
                              (m.flow_bytes, FlowBytesMatch), (m.age, AgeMatch)):  # fmt: skip
            if rng_spec is not None:
                pm = cls(_range(rng_spec))
                dynamic.append(pm)
                if rng_spec.max is not None:
                    expiring.append(pm)
        if m.size is not None:
            dynamic.append(SizeMatch(_range(m.size)))
        if m.payload_size is not None:
            dynamic.append(PayloadSizeMatch(_range(m.payload_size)))
        if m.handshake is not None:
            dynamic.append(HandshakeMatch(m.handshake))
        if m.fully_encrypted is not None:
            fe = m.fully_encrypted
            th = FetThresholds(fe.popcount_low, fe.popcount_high, fe.printable_prefix, fe.printable_share,
                               fe.printable_run)  # fmt: skip
            # The draw is per flow; seeded by the run's seed and where the matcher sits, so two
            # rules draw independently and every run of the same traffic draws the same.
            fem = FullyEncryptedMatch(th, fe.probability, derive_seed(self.seed, "fully_encrypted", where))
            dynamic.append(fem)
            expiring.append(fem)
        if m.labels is not None:
            for label in m.labels.any_:
                if label not in self.known_labels:
                    raise PolicyCompileError(
                        f"{where}.labels: unknown label {label!r} (known: {', '.join(sorted(self.known_labels))})"
                    )
            dynamic.append(LabelsMatch(frozenset(m.labels.any_), m.labels.guesses))
        if m.sni is not None:
            s = m.sni
            dynamic.append(
                SniMatch(
                    frozenset(x.lower() for x in s.exact),
                    tuple(x.lower().lstrip(".") for x in s.suffix),
                    tuple(x.lower() for x in s.substring),
                    tuple(compile_regex(x) for x in s.regex),
                )
            )
        if m.alpn:
            dynamic.append(AlpnMatch(frozenset(m.alpn)))
        if m.ech is not None:
            dynamic.append(EchMatch(m.ech))
        if m.fingerprint is not None:
            fp = m.fingerprint
            dynamic.append(
                FingerprintMatch(
                    frozenset(x.lower() for x in fp.ja3),
                    frozenset(x.lower() for x in fp.ja4),
                    frozenset(x.lower() for x in fp.ja3s),
                )
            )
        if m.groups is not None:
            kinds = ("client", "server") if m.groups.hello is HelloKind.ANY else (m.groups.hello.value,)
            dynamic.append(GroupsMatch(tuple(m.groups.order), kinds))
        for b in m.payload:
            dynamic.append(BytesMatch(b.offset, b.hex, b.mask, b.within))
        if m.conforms is not None:
            cf = m.conforms
            try:
                protocols = frozenset(Protocol(x) for x in cf.protocols)
            except ValueError as exc:
                raise PolicyCompileError(f"{where}.conforms: {exc}") from exc
            dynamic.append(ConformsMatch(protocols, cf.packets))
            self.keep_data_packets = max(self.keep_data_packets, cf.packets)
        if m.quic is not None and m.quic.first_initial_only:
            dynamic.append(WholeHelloInFirstInitialMatch())
        if m.not_ is not None:
            dynamic.append(Not(self.whole(m.not_, f"{where}.not")))
        if m.any_:
            dynamic.append(AnyOf(tuple(self.whole(sub, f"{where}.any[{i}]") for i, sub in enumerate(m.any_))))
        for i, sub in enumerate(m.all_):
            dynamic.append(self.whole(sub, f"{where}.all[{i}]"))
        if m.connections is not None:
            # Last: a flow is counted once every other matcher of the block holds for it.
            cn = m.connections
            key = ConnectionKey(cn.sni, cn.server, cn.port, cn.client, cn.client_prefix)
            dynamic.append(ConnectionsMatch(cn.count, cn.window, key))
        return static, dynamic, expiring

    def whole(self, m: MatchIR, where: str) -> Matcher:
        """A nested block as one per-packet matcher (its static parts evaluated per packet)."""
        static, dynamic, _ = self.match(m, where)
        parts: list[Matcher] = [StaticAsDynamic(s) for s in static]
        parts.extend(dynamic)
        return AllOf(tuple(parts))

    # -- actions ---------------------------------------------------------------------------------

    def rule(self, index: int, spec: RuleIR, seed: int) -> CompiledRule:
        where = f"rules[{index}]"
        static, dynamic, expiring = self.match(spec.match, f"{where}.match")
        if spec.sticky:
            # A sticky rule keeps matching its flow in both directions once it matched, so a
            # packet-direction filter may only gate the first match: evaluate it per packet.
            moved = [s for s in static if isinstance(s, DirectionMatch)]
            static = [s for s in static if not isinstance(s, DirectionMatch)]
            dynamic = [StaticAsDynamic(s) for s in moved] + dynamic
        a = spec.action
        direction = a.direction
        applies: StaticMatcher | None = None
        if direction is not PacketDirection.BOTH:
            applies = DirectionMatch(direction)
        rule = CompiledRule(
            index=index,
            name=spec.name,
            describe=a.describe(),
            static=tuple(static),
            dynamic=tuple(dynamic),
            applies=applies,
            accept=a.accept,
            ignore=a.ignore,
            drop=a.drop,
            expiring=() if spec.sticky else tuple(expiring),
            sticky=spec.sticky,
            syn_inside=spec.match.syn_from_inside is True,
            seed=derive_seed(seed, "rule", index, spec.name),
        )
        if a.reject is not None:
            rule.reject = _reject(a.reject)
        if a.cut is not None:
            cut = a.cut
            rule.cut = CutPlan(
                cut.after_packets,
                cut.after_bytes,
                cut.after_seconds,
                cut.count_from is CountFrom.MATCH,
                _reject(_DEFAULT_REJECT) if cut.then is Then.REJECT else None,
            )
        if a.loss is not None:
            ls = a.loss
            if ls.model is LossModel.BERNOULLI:
                rule.loss = Bernoulli(ls.p)
            else:
                rule.loss = GilbertElliott(ls.p, ls.r, ls.loss_bad, ls.loss_good)
        if a.throttle is not None:
            t = a.throttle
            rule.throttle = ThrottlePlan(t.rate, float(t.burst), t.mode, t.per, float(t.backlog), t.backlog_packets)
        if a.delay is not None:
            rule.delay = DelaySampler(a.delay.time, a.delay.jitter, a.delay.distribution)
            rule.reorder = a.delay.reorder
        if a.block_after is not None:
            b = a.block_after
            residual_reject = None
            if b.then is Then.REJECT:
                residual_reject = _reject(a.reject or _DEFAULT_REJECT)
                if residual_reject.with_ is RejectWith.REWRITE:
                    # A residual block catches new flows before any server reply: reset them.
                    residual_reject = _reject(_DEFAULT_REJECT)
            rule.residual = ResidualPlan(
                b.duration, b.key, residual_reject, b.restart, b.direction is BlockDirection.TO_SERVER
            )
        return rule


def _reject(spec: RejectIR) -> RejectPlan:
    return RejectPlan(spec.with_, spec.to, spec.icmp)


def _range(r: RangeIR) -> Range:
    return Range(r.min, r.max)


def _inside_list(addresses: Iterable[str]) -> AddressList:
    al = AddressList("inside")
    for a in addresses:
        ipaddress.ip_network(a, strict=False)  # raises ValueError on a bad entry
        al.add(a)
    return al


def compile_policy(
    spec: PolicyIR,
    *,
    resolve_node: Callable[[str], list[str]],
    inside_addresses: Iterable[str],
    seed: int,
    start: float = 0.0,
    read_file: Callable[[str], str] | None = None,
    known_labels: Collection[str] | None = None,
) -> RulePolicy:
    """Build the running policy.

    ``resolve_node(name)`` returns a node's addresses (raise KeyError for an unknown name);
    ``inside_addresses`` are the addresses/CIDRs of the censored side (``initiator: inside``,
    ``direction: outbound``); ``seed`` seeds every random draw; ``start`` is the run's start on
    the clock ``decide`` will be given (event-log and time-window times are relative to it);
    ``read_file(path)`` returns the text of a ``{file: ...}`` list. Raises PolicyCompileError.
    """
    c = _Compiler(spec, resolve_node, read_file, known_labels, seed)
    try:
        inside = _inside_list(inside_addresses)
    except ValueError as exc:
        raise PolicyCompileError(f"inside_addresses: {exc}") from exc
    rules = [c.rule(i, r, seed) for i, r in enumerate(spec.rules)]
    for ls in spec.lists:
        c.named_list(ls.name, f"lists.{ls.name}")  # unused lists are still checked
    settings = spec.settings
    policy = RulePolicy(
        rules,
        inside=inside,
        seed=seed,
        start=start,
        inspect_packets=settings.inspect_packets,
        max_events=settings.max_events,
        max_residual=settings.max_residual,
        max_held=settings.max_held,
    )
    policy.keep_data_packets = c.keep_data_packets
    # The scenario's lists, resolved: the censor also gives them to its classifier, so that flows
    # are labelled with them (a relay in the `telegram` list looks like Telegram's relays).
    policy.address_lists = {ls.name: c.named_list(ls.name, f"lists.{ls.name}") for ls in spec.lists}
    return policy


def estimate_max_hold(spec: PolicyIR) -> float:
    """Seconds a packet may be held at most by this policy's rules (delay tails bounded at four
    deviations; pareto at ten), for sizing the kernel queue: packets/s x this <= queue length."""
    worst = 0.0
    for r in spec.rules:
        a = r.action
        hold = 0.0
        if a.delay is not None:
            k = 10.0 if a.delay.distribution in (Distribution.PARETO, Distribution.PARETONORMAL) else 4.0
            spread = a.delay.jitter if a.delay.distribution is Distribution.UNIFORM else k * a.delay.jitter
            hold += a.delay.time + spread
        if a.throttle is not None and a.throttle.mode is ThrottleMode.SHAPE:
            hold += a.throttle.backlog / a.throttle.rate
        worst = max(worst, hold)
    return worst
