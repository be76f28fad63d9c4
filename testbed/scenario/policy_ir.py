"""The scenario's side of the policy IR: validated ``censor:`` keys -> ``testbed.core.policy_ir``.

The schema (``policy_schema``) owns the defaults and the units; this module writes them out, so
the IR carries only resolved values (``effective_burst``, ``effective_direction``, ...) and the
core never needs pydantic. Names (nodes, lists, labels) pass through: ``compile_policy`` resolves
them against the run's topology.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from testbed.core.policy_ir import (
    ActionIR,
    AddressesIR,
    BlockAfterIR,
    BytesIR,
    ConformsIR,
    ConnectionsIR,
    CutIR,
    DelayIR,
    FetIR,
    FingerprintIR,
    GroupsIR,
    LabelsIR,
    ListIR,
    LossIR,
    MatchIR,
    PolicyIR,
    QuicIR,
    RangeIR,
    RejectIR,
    RuleIR,
    SettingsIR,
    SniIR,
    ThrottleIR,
    TimeWindowIR,
)
from testbed.scenario.common import Side
from testbed.scenario.policy_schema import (
    ActionSpec,
    AddressSpec,
    ListSpec,
    MatchSpec,
    PolicySettings,
    RangeSpec,
    RejectSpec,
    RuleSpec,
)

__all__ = ["PolicySource", "policy_ir"]


class PolicySource(Protocol):
    """What ``policy_ir`` reads: ``PolicySpec``, or ``CensorSpec`` with the same fields."""

    @property
    def rules(self) -> Sequence[RuleSpec]: ...
    @property
    def lists(self) -> Mapping[str, ListSpec]: ...
    @property
    def policy(self) -> PolicySettings: ...


def policy_ir(source: PolicySource) -> PolicyIR:
    s = source.policy
    return PolicyIR(
        rules=tuple(_rule(r) for r in source.rules),
        lists=tuple(ListIR(name, tuple(ls.entries), ls.file) for name, ls in source.lists.items()),
        settings=SettingsIR(s.inspect_packets, s.max_events, s.max_residual, s.max_held),
    )


def _rule(r: RuleSpec) -> RuleIR:
    return RuleIR(name=r.name, match=_match(r.match), action=_action(r.action), sticky=r.sticky)


def _addresses(a: AddressSpec | None) -> AddressesIR | None:
    return None if a is None else AddressesIR(tuple(a.addresses), tuple(a.lists))


def _range(r: RangeSpec | None) -> RangeIR | None:
    return None if r is None else RangeIR(r.min, r.max)


def _match(m: MatchSpec) -> MatchIR:
    return MatchIR(
        labels=None if m.labels is None else LabelsIR(tuple(m.labels.any_), m.labels.guesses),
        transport=tuple(m.transport),
        family=m.family,
        src=_addresses(m.src),
        dst=_addresses(m.dst),
        addr=_addresses(m.addr),
        src_port=m.src_port,
        dst_port=m.dst_port,
        port=m.port,
        initiator_inside=None if m.initiator is None else m.initiator is Side.INSIDE,
        syn_from_inside=None if m.syn_from is None else m.syn_from is Side.INSIDE,
        direction=m.direction,
        sni=None if m.sni is None else SniIR(m.sni.exact, m.sni.suffix, m.sni.substring, m.sni.regex),
        alpn=tuple(m.alpn),
        ech=m.ech,
        fingerprint=(
            None if m.fingerprint is None else FingerprintIR(m.fingerprint.ja3, m.fingerprint.ja4, m.fingerprint.ja3s)
        ),  # fmt: skip
        groups=None if m.groups is None else GroupsIR(tuple(m.groups.order), m.groups.hello),
        payload=tuple(BytesIR(b.hex, b.offset, b.mask, b.within) for b in m.payload),
        size=_range(m.size),
        payload_size=_range(m.payload_size),
        packet_index=_range(m.packet_index),
        data_packet=_range(m.data_packet),
        flow_bytes=_range(m.flow_bytes),
        age=_range(m.age),
        handshake=m.handshake,
        time=None if m.time is None else TimeWindowIR(m.time.start, m.time.until, m.time.period, m.time.active),
        fully_encrypted=_fet(m),
        connections=_connections(m),
        conforms=None if m.conforms is None else ConformsIR(tuple(m.conforms.protocols), m.conforms.packets),
        quic=None if m.quic is None else QuicIR(m.quic.src_port_above_dst, m.quic.first_initial_only),
        not_=None if m.not_ is None else _match(m.not_),
        any_=tuple(_match(x) for x in m.any_),
        all_=tuple(_match(x) for x in m.all_),
    )


def _fet(m: MatchSpec) -> FetIR | None:
    f = m.fully_encrypted
    if f is None:
        return None
    lo, hi = f.popcount
    return FetIR(lo, hi, f.printable_prefix, f.printable_share, f.printable_run, f.probability)


def _connections(m: MatchSpec) -> ConnectionsIR | None:
    c = m.connections
    if c is None:
        return None
    same = set(c.same)
    return ConnectionsIR(
        c.count, c.window, "sni" in same, "server" in same, "port" in same, "client" in same, c.client_prefix
    )


def _reject(r: RejectSpec | None) -> RejectIR | None:
    return None if r is None else RejectIR(r.with_, r.to, r.icmp)


def _action(a: ActionSpec) -> ActionIR:
    t, d, ls, c, b = a.throttle, a.delay, a.loss, a.cut, a.block_after
    return ActionIR(
        direction=a.effective_direction,
        accept=a.accept,
        drop=a.drop,
        ignore=a.ignore,
        reject=_reject(a.reject),
        throttle=(
            None
            if t is None
            else ThrottleIR(t.rate, t.effective_burst, t.mode, t.per, t.effective_backlog, t.backlog_packets)
        ),  # fmt: skip
        delay=None if d is None else DelayIR(d.time, d.jitter, d.distribution, d.reorder),
        loss=(
            None
            if ls is None
            else LossIR(ls.model, ls.p, ls.effective_r, ls.effective_loss_bad, ls.effective_loss_good)
        ),  # fmt: skip
        cut=None if c is None else CutIR(c.after_packets, c.after_bytes, c.after_seconds, c.count_from, c.then),
        block_after=None if b is None else BlockAfterIR(b.duration, b.key, b.then, b.restart, b.direction),
    )
