"""The policy as plain data: what ``compile_policy`` builds a running policy from.

Layering (issue 11): ``testbed.scenario`` validates a scenario's ``censor:`` keys with pydantic and
compiles them into these records (``testbed.scenario.policy_ir``); the core never sees pydantic
and imports nothing from ``testbed.scenario``. The censor process receives the same records as
JSON (``PolicyIR.to_json`` / ``PolicyIR.from_json``), so both sides build the policy from one
value.

What the scenario compiler has already done: every default resolved (a throttle's burst, a loss
model's ``r``, an action's direction), units turned into numbers (bytes, bytes per second,
seconds), the ``describe`` text of each action fixed. What it has not done: names. Node names,
list names, list files and labels stay names here; ``compile_policy`` resolves them against the
run's topology, so a run and a pre-check resolve them the same way.

JSON: objects with one key per field (a trailing ``_`` dropped: ``not``, ``any``, ``with``),
enums as their values, bytes as hex, tuples as arrays. ``from_json`` checks every type and
raises ``PolicyIRError`` naming the path of the first bad value.

A leaf module beside ``policy_kinds`` rather than inside ``testbed.core.policy``: importing that
package loads the whole engine (~0.2 s), and the scenario loader needs only these records.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import types
import typing
from dataclasses import dataclass
from typing import TypeVar, get_args, get_origin, get_type_hints

from testbed.core.policy_kinds import (
    BlockDirection,
    BlockKey,
    CountFrom,
    Distribution,
    Family,
    HelloKind,
    IcmpCode,
    LossModel,
    PacketDirection,
    PayloadScope,
    RejectTo,
    RejectWith,
    Then,
    ThrottleMode,
    ThrottlePer,
    Transport,
)
from testbed.records.json import JsonObject

__all__ = [
    "ActionIR",
    "AddressesIR",
    "BlockAfterIR",
    "BytesIR",
    "ConformsIR",
    "ConnectionsIR",
    "CutIR",
    "DelayIR",
    "FetIR",
    "FingerprintIR",
    "GroupsIR",
    "LabelsIR",
    "ListIR",
    "LossIR",
    "MatchIR",
    "PolicyIR",
    "PolicyIRError",
    "QuicIR",
    "RangeIR",
    "RejectIR",
    "RuleIR",
    "SettingsIR",
    "SniIR",
    "ThrottleIR",
    "TimeWindowIR",
    "is_node_name",
]


class PolicyIRError(ValueError):
    """JSON that is not a policy IR (a censor config written by another testbed version, or a bug)."""


def is_node_name(entry: str) -> bool:
    """An address entry that is not an address or CIDR prefix names a node (the schema checked
    its spelling; ``compile_policy``'s ``resolve_node`` knows its addresses)."""
    try:
        ipaddress.ip_network(entry, strict=False)
        return False
    except ValueError:
        return True


# --- addresses ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListIR:
    """A named address list: inline entries (addresses, CIDRs, node names) and/or a file of CIDRs."""

    name: str
    entries: tuple[str, ...] = ()
    file: str | None = None  # relative to the scenario's directory unless absolute


@dataclass(frozen=True, slots=True)
class AddressesIR:
    """Literal addresses/CIDRs, node names and names of lists (a scenario's or a shipped one)."""

    addresses: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()


# --- matchers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeIR:
    """Inclusive; ``None`` leaves that end open."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class TimeWindowIR:
    """Seconds of the run: active from ``start`` until ``until``; with ``period``, only for the
    first ``active`` seconds of each cycle (``testbed.core.policy.window.TimeWindow``)."""

    start: float = 0.0
    until: float | None = None
    period: float | None = None
    active: float | None = None


@dataclass(frozen=True, slots=True)
class LabelsIR:
    any_: tuple[str, ...]
    guesses: bool = False


@dataclass(frozen=True, slots=True)
class SniIR:
    exact: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    substring: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()  # RE2 syntax (testbed.core.policy_regex)


@dataclass(frozen=True, slots=True)
class FingerprintIR:
    ja3: tuple[str, ...] = ()
    ja4: tuple[str, ...] = ()
    ja3s: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupsIR:
    order: tuple[int, ...]  # TLS supported_groups code points, wire order
    hello: HelloKind = HelloKind.ANY


@dataclass(frozen=True, slots=True)
class BytesIR:
    hex: bytes
    offset: int = 0
    mask: bytes | None = None
    within: PayloadScope = PayloadScope.PACKET


@dataclass(frozen=True, slots=True)
class FetIR:
    """Fully encrypted traffic (I.26): the exemption thresholds and the blocking probability."""

    popcount_low: float
    popcount_high: float
    printable_prefix: int
    printable_share: float
    printable_run: int
    probability: float


@dataclass(frozen=True, slots=True)
class ConnectionsIR:
    """The ``count``-th flow with the same key within ``window`` seconds (F.16)."""

    count: int
    window: float
    sni: bool = False
    server: bool = False
    port: bool = False
    client: bool = False
    client_prefix: int | None = None


@dataclass(frozen=True, slots=True)
class ConformsIR:
    """The client's first ``packets`` data packets, joined, look like one of ``protocols`` (H.24)."""

    protocols: tuple[str, ...]  # "tls", "http", "dns"
    packets: int = 2


@dataclass(frozen=True, slots=True)
class QuicIR:
    """The GFW's QUIC SNI filter's limits (I.27)."""

    src_port_above_dst: bool = False
    first_initial_only: bool = False


@dataclass(frozen=True, slots=True)
class MatchIR:
    """Every key given must hold; the empty match matches everything (docs/policy.md, "Match")."""

    labels: LabelsIR | None = None
    transport: tuple[Transport, ...] = ()
    family: Family | None = None
    src: AddressesIR | None = None
    dst: AddressesIR | None = None
    addr: AddressesIR | None = None
    src_port: tuple[tuple[int, int], ...] | None = None  # inclusive (low, high) ranges
    dst_port: tuple[tuple[int, int], ...] | None = None
    port: tuple[tuple[int, int], ...] | None = None
    initiator_inside: bool | None = None  # ``initiator: inside`` is True
    syn_from_inside: bool | None = None  # ``syn_from: inside`` is True
    direction: PacketDirection | None = None
    sni: SniIR | None = None
    alpn: tuple[str, ...] = ()
    ech: bool | None = None
    fingerprint: FingerprintIR | None = None
    groups: GroupsIR | None = None
    payload: tuple[BytesIR, ...] = ()
    size: RangeIR | None = None
    payload_size: RangeIR | None = None
    packet_index: RangeIR | None = None
    data_packet: RangeIR | None = None
    flow_bytes: RangeIR | None = None
    age: RangeIR | None = None
    handshake: bool | None = None
    time: TimeWindowIR | None = None
    fully_encrypted: FetIR | None = None
    connections: ConnectionsIR | None = None
    conforms: ConformsIR | None = None
    quic: QuicIR | None = None
    not_: MatchIR | None = None
    any_: tuple[MatchIR, ...] = ()
    all_: tuple[MatchIR, ...] = ()


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectIR:
    with_: RejectWith = RejectWith.AUTO
    to: RejectTo = RejectTo.BOTH
    icmp: IcmpCode = IcmpCode.PORT


@dataclass(frozen=True, slots=True)
class ThrottleIR:
    rate: float  # bytes per second
    burst: int  # bytes
    mode: ThrottleMode
    per: ThrottlePer
    backlog: int  # bytes (shape)
    backlog_packets: int


@dataclass(frozen=True, slots=True)
class DelayIR:
    time: float
    jitter: float
    distribution: Distribution
    reorder: bool


@dataclass(frozen=True, slots=True)
class LossIR:
    model: LossModel
    p: float
    r: float  # gilbert-elliott: bad -> good
    loss_bad: float  # gilbert-elliott: 1-h
    loss_good: float  # gilbert-elliott: 1-k


@dataclass(frozen=True, slots=True)
class CutIR:
    after_packets: int | None
    after_bytes: int | None
    after_seconds: float | None
    count_from: CountFrom
    then: Then


@dataclass(frozen=True, slots=True)
class BlockAfterIR:
    duration: float
    key: BlockKey
    then: Then
    restart: bool
    direction: BlockDirection = BlockDirection.BOTH


@dataclass(frozen=True, slots=True)
class ActionIR:
    direction: PacketDirection  # resolved: which packets of a matched flow the action applies to
    accept: bool = False
    drop: bool = False
    ignore: bool = False
    reject: RejectIR | None = None
    throttle: ThrottleIR | None = None
    delay: DelayIR | None = None
    loss: LossIR | None = None
    cut: CutIR | None = None
    block_after: BlockAfterIR | None = None

    def describe(self) -> str:
        """A short human summary in the order the pieces act, e.g. ``loss+delay (original)``."""
        parts = [k for k in ("accept", "drop", "ignore") if getattr(self, k)]
        parts += [
            k for k in ("reject", "cut", "loss", "throttle", "delay", "block_after") if getattr(self, k) is not None
        ]
        return "+".join(parts) + f" ({self.direction.value})"


# --- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleIR:
    name: str
    action: ActionIR
    match: MatchIR = MatchIR()
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class SettingsIR:
    """``censor.policy``; defaults live in the schema (``PolicySettings``), not here."""

    inspect_packets: int
    max_events: int
    max_residual: int
    max_held: int


@dataclass(frozen=True, slots=True)
class PolicyIR:
    rules: tuple[RuleIR, ...]
    lists: tuple[ListIR, ...]  # the scenario's lists, in its order
    settings: SettingsIR

    def to_json(self) -> JsonObject:
        out = _encode(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_json(cls, data: object) -> PolicyIR:
        return _decode_record(cls, data, "policy")


# --- JSON ---------------------------------------------------------------------------------------
# One generic codec driven by the field annotations, rather than a to_json/from_json pair per
# record: twenty hand-written pairs would drift from the fields they serialise.

_R = TypeVar("_R")


def _key(name: str) -> str:
    return name.removesuffix("_")


def _encode(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f.name): _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value  # str, int, float, bool, None


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return get_type_hints(cls)


def _decode_record(cls: type[_R], data: object, where: str) -> _R:
    if not isinstance(data, dict):
        raise PolicyIRError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)  # type: ignore[arg-type]  # a class is hashable; mypy cannot see it of type[_R]
    fields = {_key(f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise PolicyIRError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    kwargs: dict[str, object] = {}
    for key, f in fields.items():
        if key in data:
            kwargs[f.name] = _decode(hints[f.name], data[key], f"{where}.{key}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PolicyIRError(f"{where}: missing key {key!r}")
    return cls(**kwargs)


def _decode(tp: object, value: object, where: str) -> object:
    origin = get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # only ``X | None`` occurs here
        return _decode(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise PolicyIRError(f"{where}: expected an array, got {type(value).__name__}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise PolicyIRError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise PolicyIRError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_record(tp, value, where)
    if tp is bytes:
        if isinstance(value, str):
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise PolicyIRError(f"{where}: expected hex bytes, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise PolicyIRError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
