"""The ``censor:`` section's policy keys: named address lists, ordered rules, engine settings.

What a scenario *describes*; ``testbed.scenario.policy_ir`` compiles it into the core's plain
policy IR, which ``testbed.core.policy.compile_policy`` turns into the object the censor runs.
Frozen, ``extra="forbid"``, and every check that can point at one key does so from a field
validator, so the loader's ``file:line: key`` is the offending key's line.

Units (docs/policy.md, "Units"):

- rates are bits or bytes per second, always with a unit: ``130kbit``, ``1.5Mbit``, ``20KB/s``.
  ``kbps``/``Mbps`` are refused: tc reads ``kbps`` as kilo*bytes*, most people as kilo*bits*;
- sizes are bytes: ``1500``, ``1500B``, ``16KB`` (1000), ``16KiB`` (1024), ``1MB``;
- probabilities are ``1%`` or ``0.01``; durations ``50ms``, ``2s``, ``1.5``, ``10m``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Shared units and names come from testbed.scenario.common (not model.py: model.py imports this
# module for CensorSpec's fields).
from testbed.core.policy_ir import is_node_name
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
from testbed.core.policy_regex import RegexError, compile_regex
from testbed.scenario.common import (
    MAX_DURATION_S,
    MAX_RATE_BIT_S,
    NODE_NAME_RE,
    Duration,
    Side,
    _Frozen,
    finite_number,
    parse_duration,
    rate_text_bytes_per_s,
)

__all__ = [
    "ActionSpec",
    "AddressSpec",
    "BlockAfterSpec",
    "BlockDirection",
    "BlockKey",
    "BytesSpec",
    "ConformsSpec",
    "ConnectionsSpec",
    "CountFrom",
    "CutSpec",
    "DelaySpec",
    "Distribution",
    "FetSpec",
    "FingerprintSpec",
    "GroupsSpec",
    "HelloKind",
    "IcmpCode",
    "LossModel",
    "LossSpec",
    "LabelsSpec",
    "ListSpec",
    "MatchSpec",
    "PacketDirection",
    "PayloadScope",
    "PolicySettings",
    "PolicySpec",
    "QuicSpec",
    "RangeSpec",
    "RejectSpec",
    "RejectWith",
    "RuleSpec",
    "Rules",
    "Lists",
    "SniSpec",
    "Then",
    "ThrottleMode",
    "ThrottlePer",
    "TimeWindowSpec",
    "Transport",
    "GROUP_NAMES",
    "parse_probability",
    "parse_rate",
    "parse_size",
    "policy_reference_problems",
]


# --- units --------------------------------------------------------------------------------------

_NUM = r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
_SIZE_RE = re.compile(rf"^\s*{_NUM}\s*(?P<unit>[A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "B": 1, "KB": 1000, "kB": 1000, "MB": 1000**2, "GB": 1000**3,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
}  # fmt: skip
_PCT_RE = re.compile(rf"^\s*{_NUM}\s*%\s*$")


def parse_rate(value: Any) -> Any:
    """``130kbit`` / ``1Mbit`` / ``1Mbit/s`` / ``20KB/s`` -> bytes per second (float)."""
    if isinstance(value, str):
        return rate_text_bytes_per_s(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # Plain numbers are what a dumped (already parsed) spec holds: bytes per second.
        return finite_number(value, "a rate")
    raise ValueError(f"{value!r} is not a rate; write e.g. '130kbit', '1Mbit' or '16KB/s'")


def parse_size(value: Any) -> Any:
    """``1500`` / ``1500B`` / ``16KB`` (x1000) / ``16KiB`` (x1024) -> bytes (int)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '16KB'")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m["unit"] in _SIZE_UNITS:
            return int(round(finite_number(float(m["num"]) * _SIZE_UNITS[m["unit"]], "a size")))
        if m and m["unit"].lower() in ("kb", "mb", "gb", "kbit", "mbit", "bit"):
            raise ValueError(f"{value!r}: sizes are bytes; write 'KB' (1000 bytes) or 'KiB' (1024 bytes)")
    raise ValueError(f"{value!r} is not a size; write e.g. 1500, '1500B', '16KB' or '16KiB'")


def parse_probability(value: Any) -> Any:
    """``1%`` / ``0.5%`` / ``0.01`` -> probability in [0, 1]."""
    if isinstance(value, bool):
        raise ValueError("a probability is a number in [0, 1] or a percentage like '1%'")
    if isinstance(value, (int, float)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{value!r} is outside [0, 1]; write a percentage like '5%' or a fraction like 0.05")
        return float(value)
    if isinstance(value, str):
        m = _PCT_RE.match(value)
        if m:
            p = float(m["num"]) / 100.0
            if p > 1.0:
                raise ValueError(f"{value!r} is more than 100%")
            return p
    raise ValueError(f"{value!r} is not a probability; write e.g. '1%' or 0.01")


Rate = Annotated[float, BeforeValidator(parse_rate), Field(gt=0, le=MAX_RATE_BIT_S / 8)]
"""Bytes per second (1 Tbit/s at most, as every scenario rate)."""
MAX_SIZE = 2**40
"""1 TiB: far beyond any flow of a run, and exact as a float in token buckets."""
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0, le=MAX_SIZE)]
Probability = Annotated[float, BeforeValidator(parse_probability)]


def _hex_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF:
        return bytes([value])
    if isinstance(value, str):
        text = value.replace(" ", "").replace(":", "").replace("_", "")
        text = text.removeprefix("0x").removeprefix("0X")
        if text and len(text) % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]+", text):
            return bytes.fromhex(text)
    raise ValueError(f"{value!r} is not hex bytes; write e.g. '16 FE FD' or '00000001'")


HexBytes = Annotated[bytes, BeforeValidator(_hex_bytes), PlainSerializer(lambda b: b.hex(" "), return_type=str)]


def _offset(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            raise ValueError(f"{value!r} is not an offset; write e.g. 90 or '0x5A'") from None
    return value


Offset = Annotated[int, BeforeValidator(_offset), Field(ge=0, le=65535)]


def _as_tuple(value: Any) -> Any:
    """Let a single item stand for a one-item list (``labels: stun``)."""
    if isinstance(value, (str, int, dict)) and not isinstance(value, bool):
        return (value,)
    return value


# --- names --------------------------------------------------------------------------------------
# (The enums -- Transport, HelloKind, IcmpCode, LossModel, Then, CountFrom, BlockKey and the rest
# -- are the core's, testbed.core.policy_kinds: the schema validates into the values the policy
# runs on, never converted by value.)


# Names for TLS supported_groups code points (IANA TLS Supported Groups registry).
GROUP_NAMES = {
    "secp256r1": 23, "p-256": 23, "p256": 23,
    "secp384r1": 24, "p-384": 24, "p384": 24,
    "secp521r1": 25, "p-521": 25, "p521": 25,
    "x25519": 29, "x448": 30,
    "ffdhe2048": 256, "ffdhe3072": 257, "ffdhe4096": 258,
    "x25519mlkem768": 4588, "x25519kyber768draft00": 25497,
}  # fmt: skip

_LIST_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_RULE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# --- address lists ------------------------------------------------------------------------------


def _address_entry(value: str) -> str:
    value = value.strip()
    try:
        ipaddress.ip_network(value, strict=False)
        return value
    except ValueError:
        pass
    if re.match(NODE_NAME_RE, value):
        return value  # a node name, resolved by the runner (compile_policy's resolve_node)
    raise ValueError(f"{value!r} is neither an address, a CIDR prefix nor a node name")


AddressEntry = Annotated[str, AfterValidator(_address_entry)]


class ListSpec(_Frozen):
    """A named address list: inline entries (``[relay, 91.108.4.0/22]``) and/or a file of CIDRs."""

    entries: tuple[AddressEntry, ...] = ()
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {"entries": value}
        if isinstance(value, str):
            return {"entries": [value]}
        return value

    @field_validator("file")
    @classmethod
    def _file_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give the path of a file with one CIDR per line")
        return value


class AddressSpec(_Frozen):
    """Addresses to match: literal addresses/CIDRs, node names and named lists."""

    addresses: tuple[AddressEntry, ...] = ()
    lists: tuple[str, ...] = Field((), alias="list")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"addresses": [value]}
        if isinstance(value, (list, tuple)):
            addrs: list[Any] = []
            lists: list[Any] = []
            for item in value:
                if isinstance(item, dict) and set(item) == {"list"}:
                    got = item["list"]
                    lists.extend(got if isinstance(got, (list, tuple)) else [got])
                else:
                    addrs.append(item)
            return {"addresses": addrs, "list": lists}
        return value

    @field_validator("lists", mode="before")
    @classmethod
    def _list_names(cls, value: Any) -> Any:
        value = _as_tuple(value)
        for name in value:
            if not isinstance(name, str) or not _LIST_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a list name (lowercase letters, digits, '-', '_')")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> AddressSpec:
        if not self.addresses and not self.lists:
            raise ValueError("no addresses: give addresses, node names or {list: NAME}")
        return self


# --- ranges -------------------------------------------------------------------------------------


class RangeSpec(_Frozen):
    """An inclusive range; either bound may be omitted. ``5`` is 5-5, ``"5-8"`` is 5-8."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.min is None and self.max is None:
            raise ValueError("a range needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


def _range_of(parse: Any, high: float) -> Any:
    def bounded(value: Any) -> Any:
        v = parse(value)
        if isinstance(v, (int, float)) and not 0 <= v <= high:  # also refuses nan
            raise ValueError(f"{value!r} is outside 0..{high:g}")
        return v

    def before(value: Any) -> Any:
        if isinstance(value, RangeSpec):
            return value
        if isinstance(value, dict):
            return {k: (bounded(v) if k in ("min", "max") and v is not None else v) for k, v in value.items()}
        if isinstance(value, str) and "-" in value.strip()[1:]:
            lo, hi = value.split("-", 1)
            return {"min": bounded(lo.strip()), "max": bounded(hi.strip())}
        v = bounded(value)
        return {"min": v, "max": v}

    return before


def _int_value(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
    return value


SizeRange = Annotated[RangeSpec, BeforeValidator(_range_of(parse_size, MAX_SIZE))]
CountRange = Annotated[RangeSpec, BeforeValidator(_range_of(_int_value, MAX_SIZE))]
DurationRange = Annotated[RangeSpec, BeforeValidator(_range_of(parse_duration, MAX_DURATION_S))]


def _ports(value: Any) -> Any:
    out: list[tuple[int, int]] = []
    for item in _as_tuple(value):
        if isinstance(item, (list, tuple)) and len(item) == 2:
            lo, hi = item
        elif isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", item):
            parts = item.split("-")
            lo, hi = int(parts[0]), int(parts[-1])
        else:
            raise ValueError(f"{item!r} is not a port or range; write e.g. 443 or '590-1400'")
        if not (0 <= lo <= hi <= 65535):
            raise ValueError(f"port range {lo}-{hi} must lie within 0-65535, low end first")
        out.append((lo, hi))
    if not out:
        raise ValueError("give at least one port or range")
    return tuple(out)


PortRanges = Annotated[tuple[tuple[int, int], ...], BeforeValidator(_ports)]


# --- matchers -----------------------------------------------------------------------------------


class LabelsSpec(_Frozen):
    """Any of these classifier labels. ``labels: [stun, dtls]`` is ``{any: [stun, dtls]}``.

    Only labels learnt from the traffic (and address lists) count, unless ``guesses: true``:
    then a port guess does too (``by-port`` plus the protocol of a well-known port, made when
    inspection ends on a flow nothing recognised). A guess appears mid-flow, so a rule that
    takes guesses starts acting on a flow it has let through so far."""

    any_: tuple[str, ...] = Field(alias="any")
    guesses: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, list, tuple)):
            return {"any": value}
        return value

    @field_validator("any_", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        value = _as_tuple(value)
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError("give at least one label")
        for v in value:
            if not isinstance(v, str) or not _LABEL_RE.match(v):
                raise ValueError(f"{v!r} is not a label (lowercase, e.g. whatsapp-call)")
        return value

    @model_validator(mode="after")
    def _by_port_asks_for_guesses(self) -> LabelsSpec:
        if "by-port" in self.any_ and not self.guesses:
            raise ValueError(
                "`by-port` marks a port guess, which rules only see when they ask: "
                "write labels: {any: [by-port], guesses: true}"
            )
        return self


class SniSpec(_Frozen):
    """TLS/QUIC server name. All comparisons ignore case; none strips a trailing dot, because
    TSPU did not either (a trailing dot evaded the 2021 throttler, censor-behaviors.md B.9)."""

    exact: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    """``twitter.com`` matches ``twitter.com`` and ``*.twitter.com`` (a label boundary)."""
    substring: tuple[str, ...] = ()
    """Anywhere in the name: ``t.co`` also hits ``microsoft.com`` (the 2021 bug, B.7)."""
    regex: tuple[str, ...] = ()
    """RE2 syntax (linear time, no backreferences or lookaround), searched in the lowercased
    name; anchor with ^...$ yourself."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, list, tuple)):
            return {"exact": _as_tuple(value)}
        return value

    @field_validator("exact", "suffix", "substring", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        value = _as_tuple(value)
        for v in value:
            if not isinstance(v, str) or not v or any(c.isspace() for c in v):
                raise ValueError(f"{v!r} is not a server name")
        return value

    @field_validator("regex", mode="before")
    @classmethod
    def _regex(cls, value: Any) -> Any:
        value = _as_tuple(value)
        for v in value:
            if not isinstance(v, str):
                raise ValueError(f"{v!r} is not a regular expression string")
            try:
                compile_regex(v)  # compiled again by compile_policy; here for the file:line
            except RegexError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _some(self) -> SniSpec:
        if not (self.exact or self.suffix or self.substring or self.regex):
            raise ValueError("give at least one of exact, suffix, substring, regex")
        return self


class FingerprintSpec(_Frozen):
    """Each entry matches the fingerprint's hash or its full string (``ja3``: string or MD5;
    ``ja4``: JA4 or JA4_r; ``ja3s``: string or MD5)."""

    ja3: tuple[str, ...] = ()
    ja4: tuple[str, ...] = ()
    ja3s: tuple[str, ...] = ()

    @field_validator("ja3", "ja4", "ja3s", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        value = _as_tuple(value)
        for v in value:
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{v!r} is not a fingerprint string or hash (quote hashes in YAML)")
        return value

    @model_validator(mode="after")
    def _some(self) -> FingerprintSpec:
        if not (self.ja3 or self.ja4 or self.ja3s):
            raise ValueError("give at least one of ja3, ja4, ja3s")
        return self


def _group_id(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in GROUP_NAMES:
            return GROUP_NAMES[key]
        try:
            return int(key, 0)
        except ValueError:
            raise ValueError(
                f"unknown group {value!r}; use a number or one of: {', '.join(sorted(GROUP_NAMES))}"
            ) from None
    return value


GroupId = Annotated[int, BeforeValidator(_group_id), Field(ge=0, le=0xFFFF)]


class GroupsSpec(_Frozen):
    """The supported_groups extension of a (D)TLS hello, in wire order, GREASE removed.
    pion's 2021 ServerHello carried x25519, secp256r1, secp384r1 (censor-behaviors.md H.19);
    reordering the curve IDs evaded the later ClientHello rule."""

    order: tuple[GroupId, ...]
    hello: HelloKind = HelloKind.ANY

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {"order": value}
        return value

    @field_validator("order")
    @classmethod
    def _not_empty(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give the group list, e.g. [x25519, secp256r1, secp384r1]")
        return value


class BytesSpec(_Frozen):
    """Bytes at an offset: ``{offset: 0x5A, hex: '1D 00 17 00 18'}``; ``mask`` ANDs first."""

    offset: Offset = 0
    hex: HexBytes
    mask: HexBytes | None = None
    within: PayloadScope = Field(PayloadScope.PACKET, alias="in")
    """``packet``: this packet's TCP/UDP payload; ``client_hello``/``server_hello``: the flow's
    hello (a flow fact once seen; offset 0 is the legacy_version field after the handshake
    header)."""

    @field_validator("hex")
    @classmethod
    def _hex_not_empty(cls, value: bytes) -> bytes:
        if not value:
            raise ValueError("give at least one byte")
        return value

    @field_validator("mask")
    @classmethod
    def _mask_len(cls, value: bytes | None, info: ValidationInfo) -> bytes | None:
        want = info.data.get("hex")
        if value is not None and want is not None and len(value) != len(want):
            raise ValueError(f"the mask has {len(value)} bytes; `hex` has {len(want)}")
        return value


class TimeWindowSpec(_Frozen):
    """When the rule is active, in seconds of the run. ``every``/``active``: active for the first
    ``active`` seconds of every ``every`` seconds from ``from`` ("blocks lifted and restored",
    H.21). (Not ``on``/``off``: YAML 1.1 reads those as booleans.)"""

    start: Duration = Field(0.0, alias="from")
    until: Duration | None = None
    period: Duration | None = Field(None, alias="every")
    active: Duration | None = None

    @field_validator("until")
    @classmethod
    def _after_start(cls, value: float | None, info: ValidationInfo) -> float | None:
        start = info.data.get("start")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"`until` ({value:g} s) must be after `from` ({start:g} s)")
        return value

    @field_validator("period")
    @classmethod
    def _period_positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("a period must be longer than 0 s")
        return value

    @field_validator("active", mode="after")
    @classmethod
    def _active_within_period(cls, value: float | None, info: ValidationInfo) -> float | None:
        period = info.data.get("period")
        if value is not None and period is None:
            raise ValueError("`active` needs `every` (the cycle length)")
        if value is not None and period is not None and not 0 < value < period:
            raise ValueError(f"`active` ({value:g} s) must be between 0 and `every` ({period:g} s)")
        return value

    @model_validator(mode="after")
    def _cycle_complete(self) -> TimeWindowSpec:
        if self.period is not None and self.active is None:
            raise ValueError("`every` needs `active` (how long the rule is active in each cycle)")
        return self


class FetSpec(_Frozen):
    """Fully encrypted traffic (I.26). Defaults: Wu et al., "How the Great Firewall of China Detects
    and Blocks Fully Encrypted Traffic", USENIX Security 2023 (§4.1-4.3 thresholds, §6.3 the 26.3%
    blocking rate). ``fully_encrypted: true`` takes them all."""

    popcount: tuple[float, float] = (3.4, 4.6)
    """Ex1: exempt when the mean set bits per byte is <= the first or >= the second."""
    printable_prefix: int = Field(6, ge=0, le=65535)
    """Ex2: exempt when the first N bytes are printable ASCII (0x20-0x7e); 0 turns it off."""
    printable_share: Probability = 0.5
    """Ex3: exempt when more than this share of the bytes is printable."""
    printable_run: int = Field(20, ge=0, le=65535)
    """Ex4: exempt when more than N contiguous bytes are printable."""
    probability: Probability = 0.263
    """A flow with no exemption matches with this probability (a seeded per-flow draw)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False or value is None:
            raise ValueError(
                "write `fully_encrypted: true` (the paper's thresholds) or a mapping of thresholds; "
                "for the opposite, `not: {fully_encrypted: true}`"
            )
        return value

    @field_validator("popcount")
    @classmethod
    def _popcount(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (0.0 <= lo < hi <= 8.0):
            raise ValueError(f"popcount [{lo:g}, {hi:g}]: give [low, high] bits per byte, 0 <= low < high <= 8")
        return value


_SAME_RE = re.compile(r"^(?:sni|server|port|client|subnet/(?P<bits>\d{1,3}))$")


class ConnectionsSpec(_Frozen):
    """The ``count``-th flow (and later ones) with the same key within ``window`` (F.16: the 4th
    near-simultaneous connection to one SNI from one subnet within ~60 s, bbs #546)."""

    count: int = Field(ge=1, le=1_000_000)
    window: Duration
    same: tuple[str, ...] = ("sni", "subnet/24")
    """Key parts: ``sni``, ``server`` (its address), ``port`` (the server's), ``client`` (its
    address), ``subnet/N`` (the client's first N bits)."""

    @field_validator("window")
    @classmethod
    def _window_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a window lasts longer than 0 s")
        return value

    @field_validator("same", mode="before")
    @classmethod
    def _same(cls, value: Any) -> Any:
        value = _as_tuple(value)
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError("give at least one key part: sni, server, port, client or subnet/N")
        for v in value:
            m = _SAME_RE.match(v) if isinstance(v, str) else None
            if m is None:
                raise ValueError(
                    f"{v!r} is not a key part; write sni, server, port, client or subnet/N (e.g. subnet/24)"
                )
            if m["bits"] is not None and not 0 <= int(m["bits"]) <= 128:
                raise ValueError(f"{v!r}: a prefix length is 0-128")
        if len(set(value)) != len(value) or sum(str(v).startswith("subnet/") for v in value) > 1:
            raise ValueError("each key part may be given once (and one subnet/N)")
        return value

    @property
    def client_prefix(self) -> int | None:
        for v in self.same:
            if v.startswith("subnet/"):
                return int(v.split("/", 1)[1])
        return None


class ConformsSpec(_Frozen):
    """The client's first ``packets`` data packets, joined as they came (no TCP reassembly), look
    like one of ``protocols`` (H.24: Iran's protocol filter judged the first two together; Bock
    et al., FOCI 2020). ``conforms: [tls, http, dns]`` takes ``packets: 2``."""

    protocols: tuple[Literal["tls", "http", "dns"], ...]
    packets: int = Field(2, ge=1, le=16)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, list, tuple)):
            return {"protocols": _as_tuple(value)}
        return value

    @field_validator("protocols")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one of tls, http, dns")
        return value


class QuicSpec(_Frozen):
    """The GFW's QUIC SNI filter's limits (I.27; Zohaib et al., USENIX Security 2025)."""

    src_port_above_dst: bool = False
    """Only flows whose source (client) port is above their destination port."""
    first_initial_only: bool = False
    """Only a client datagram whose first Initial carries a whole ClientHello (no reassembly)."""

    @model_validator(mode="after")
    def _some(self) -> QuicSpec:
        if not (self.src_port_above_dst or self.first_initial_only):
            raise ValueError("give src_port_above_dst: true and/or first_initial_only: true")
        return self


def _transports(value: Any) -> Any:
    return _as_tuple(value)


class MatchSpec(_Frozen):
    """What a rule matches; every key given must hold (AND). An empty match matches everything.

    ``src``/``dst``/``src_port``/``dst_port`` describe the *flow* (its initiator and responder,
    conntrack's original tuple), so they match both directions of a flow; ``direction`` narrows
    to packets one way.
    """

    labels: LabelsSpec | None = None
    """Any of these classifier labels (stun, dtls, whatsapp-call, ... or an address-list name);
    port guesses only with ``{any: [...], guesses: true}``."""
    transport: Annotated[tuple[Transport, ...], BeforeValidator(_transports)] = ()
    family: Family | None = None
    """The flow's IP version: ``v4`` or ``v6`` (a censor that inspects only IPv4 is a rule with ``v4``)."""
    src: AddressSpec | None = None
    dst: AddressSpec | None = None
    addr: AddressSpec | None = None
    """Either end of the flow."""
    src_port: PortRanges | None = None
    dst_port: PortRanges | None = None
    port: PortRanges | None = None
    initiator: Side | None = None
    """Which side started the flow; TSPU only censors flows initiated from inside (A.1)."""
    syn_from: Side | None = None
    """TCP: ``inside`` while the first SYN came from inside and the outside sent none (a SYN from
    outside exempts the flow from the rule and its residual blocks for good, A.1); other
    transports: the initiator's side."""
    direction: PacketDirection | None = None
    sni: SniSpec | None = None
    alpn: tuple[str, ...] = ()
    ech: bool | None = None
    fingerprint: FingerprintSpec | None = None
    groups: GroupsSpec | None = None
    payload: tuple[BytesSpec, ...] = ()
    """All of these byte patterns (each in its own packet or hello)."""
    size: SizeRange | None = None
    """IP packet length in bytes."""
    payload_size: SizeRange | None = None
    """TCP/UDP payload length in bytes."""
    packet_index: CountRange | None = None
    """1-based position of the packet in its flow, both directions counted."""
    data_packet: CountRange | None = None
    """The packet is the client's Nth data packet (1-based): TCP segments with payload (not the
    handshake, pure ACKs or retransmissions), every UDP packet; server packets never match."""
    flow_bytes: SizeRange | None = None
    """IP bytes of the flow so far, both directions, this packet included."""
    age: DurationRange | None = None
    """Seconds since the flow's first packet."""
    handshake: bool | None = None
    """TCP: the three-way handshake is complete; other transports: both sides have spoken."""
    time: TimeWindowSpec | None = None
    fully_encrypted: FetSpec | None = None
    """The first client data packet of a TCP flow looks fully encrypted (I.26)."""
    connections: ConnectionsSpec | None = None
    """The flow is the ``count``-th or later with the same key within ``window`` (F.16)."""
    conforms: ConformsSpec | None = None
    """The client's first data packets, joined, look like TLS/HTTP/DNS (H.24)."""
    quic: QuicSpec | None = None
    """The GFW's QUIC conditions (I.27)."""
    not_: MatchSpec | None = Field(None, alias="not")
    any_: tuple[MatchSpec, ...] = Field((), alias="any")
    all_: tuple[MatchSpec, ...] = Field((), alias="all")

    @field_validator("alpn", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        value = _as_tuple(value)
        for v in value:
            if not isinstance(v, str) or not v:
                raise ValueError(f"{v!r} is not a protocol name")
        return value

    @field_validator("payload", mode="before")
    @classmethod
    def _payload_list(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator("transport")
    @classmethod
    def _transport_unique(cls, value: tuple[Transport, ...]) -> tuple[Transport, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each transport may be listed once")
        return value


# --- actions ------------------------------------------------------------------------------------


class RejectSpec(_Frozen):
    with_: RejectWith = Field(RejectWith.AUTO, alias="with")
    to: RejectTo = RejectTo.BOTH
    """For ``rst``: which end(s) get a RST."""
    icmp: IcmpCode = IcmpCode.PORT
    """For ``icmp`` (and ``auto`` on non-TCP): the unreachable code."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None or value is True:
            return {}
        if isinstance(value, str):
            return {"with": value}
        return value


class ThrottleSpec(_Frozen):
    rate: Rate
    burst: Size | None = None
    """Bucket depth; default max(1500 B, one second of ``rate``): the 2021 throttler delivered
    ~16 KB in 100 ms, then nothing for 900 ms, at ~130 kbit/s (censor-behaviors.md B.8)."""
    mode: ThrottleMode = ThrottleMode.POLICE
    per: ThrottlePer = ThrottlePer.DIRECTION
    backlog: Size | None = None
    """``shape`` only: bytes that may wait for tokens; beyond, packets are dropped (counted).
    Default: half a second of ``rate``, at least 3000 B."""
    backlog_packets: int = Field(1000, ge=1, le=1_000_000)
    """``shape`` only: packets that may wait; keep it below censor.queue_max_len."""

    @field_validator("burst")
    @classmethod
    def _burst_fits_a_packet(cls, value: int | None) -> int | None:
        if value is not None and value < 1500:
            raise ValueError(
                f"burst {value} B is smaller than one full-size packet (1500 B): such packets could never pass"
            )
        return value

    @field_validator("backlog")
    @classmethod
    def _backlog_shape_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("mode") is ThrottleMode.POLICE:
            raise ValueError("`backlog` applies to mode: shape (police drops, it never queues)")
        return value

    @property
    def effective_burst(self) -> int:
        return self.burst if self.burst is not None else max(1500, int(self.rate))

    @property
    def effective_backlog(self) -> int:
        return self.backlog if self.backlog is not None else max(3000, int(self.rate * 0.5))


class DelaySpec(_Frozen):
    time: Duration = 0.0
    jitter: Duration = 0.0
    distribution: Distribution = Distribution.UNIFORM
    """As netem: ``uniform`` is time +- jitter; ``normal``, ``pareto`` and ``paretonormal``
    have mean ``time`` and standard deviation ``jitter`` (before clipping at zero)."""
    reorder: bool = False
    """``false`` (default): a packet never overtakes an earlier one of its flow and direction."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return {"time": value}
        return value

    @model_validator(mode="after")
    def _some(self) -> DelaySpec:
        if self.time == 0 and self.jitter == 0:
            raise ValueError("a delay needs `time` or `jitter` above 0")
        return self


class LossSpec(_Frozen):
    """``bernoulli``: each packet lost with ``p``. ``gilbert-elliott``: netem's ``gemodel p r
    1-h 1-k`` -- ``p`` good->bad, ``r`` bad->good, ``1-h`` loss in the bad state (default
    100%), ``1-k`` loss in the good state (default 0%); ``r`` defaults to 1-p as in netem."""

    model: LossModel = LossModel.BERNOULLI
    p: Probability
    r: Probability | None = Field(None, validate_default=True)
    loss_bad: Probability | None = Field(None, alias="1-h", validate_default=True)
    loss_good: Probability | None = Field(None, alias="1-k", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return {"p": value}
        return value

    @field_validator("r", "loss_bad", "loss_good")
    @classmethod
    def _ge_only(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("model") is LossModel.BERNOULLI:
            raise ValueError(f"only model: gilbert-elliott takes `{_GE_NAMES[info.field_name or '']}`")
        return value

    @field_validator("r")
    @classmethod
    def _r_positive(cls, value: float | None) -> float | None:
        if value == 0.0:
            raise ValueError("r = 0 never leaves the bad state; give r > 0")
        return value

    @property
    def effective_r(self) -> float:
        return self.r if self.r is not None else 1.0 - self.p

    @property
    def effective_loss_bad(self) -> float:
        return 1.0 if self.loss_bad is None else self.loss_bad

    @property
    def effective_loss_good(self) -> float:
        return 0.0 if self.loss_good is None else self.loss_good


_GE_NAMES = {"r": "r", "loss_bad": "1-h", "loss_good": "1-k"}


class CutSpec(_Frozen):
    """Let the flow through until a budget is spent, then ``then``. Packets and bytes count both
    directions (the 2025 freeze counted ~25 packets both ways, ~16 KB; E.13)."""

    after_packets: int | None = Field(None, ge=0)
    after_bytes: Size | None = None
    after_seconds: Duration | None = None
    count_from: CountFrom = Field(CountFrom.FLOW, alias="from")
    """``flow``: from the flow's first packet (E.13, per connection); ``match``: from the first
    packet this rule matched (SNI-II passes 5-8 more packets after the ClientHello, A.3)."""
    then: Then = Field(Then.DROP, validate_default=True)

    @field_validator("then")
    @classmethod
    def _some_budget(cls, value: Then, info: ValidationInfo) -> Then:
        d = info.data
        if d.get("after_packets") is None and d.get("after_bytes") is None and d.get("after_seconds") is None:
            raise ValueError("a cut needs after_packets, after_bytes or after_seconds")
        return value


class BlockAfterSpec(_Frozen):
    """Residual blocking once the rule triggers: every flow (new ones included) with the same
    key is blocked for ``for`` seconds. TSPU: ~75 s after SNI-I, ~420 s after SNI-II (A.2, A.3)."""

    duration: Duration = Field(alias="for")
    key: BlockKey = BlockKey.SERVER
    then: Then = Then.DROP
    direction: BlockDirection = BlockDirection.BOTH
    """``to-server``: only packets towards the blocked server (the GFW's FET block, I.26)."""
    restart: bool = False
    """Each new flow the block catches (a fresh connection to the blocked key) starts the
    ``for`` period again, as the Iran protocol filter's 60 s did (H.24)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return {"for": value}
        return value

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a residual block lasts longer than 0 s")
        return value


_VERDICT_WORDS = {"accept", "drop", "reject", "ignore"}


class ActionSpec(_Frozen):
    """What a rule does. One of accept/drop/reject/ignore, or a stack of compatible pieces:
    impairments (throttle, delay, loss) and cut combine; block_after adds residual blocking.

    ``direction`` says which packets of a matched flow the action applies to; the others are
    accepted (and the rule still matched: first match wins). Default: ``both`` for accept,
    drop, reject, ignore and cut; ``original`` for a rule with only impairments, as netem on
    one interface delays one direction (docs/policy.md, "Direction").
    """

    accept: bool = False
    drop: bool = False
    ignore: bool = False
    """Accept and stop inspecting the flow for good: no later rule is ever evaluated for it
    (a DPI that gave up, B.9: junk first stops inspection)."""
    reject: RejectSpec | None = None
    throttle: ThrottleSpec | None = None
    delay: DelaySpec | None = None
    loss: LossSpec | None = None
    cut: CutSpec | None = None
    block_after: BlockAfterSpec | None = None
    direction: PacketDirection | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in _VERDICT_WORDS:
                raise ValueError(
                    f"unknown action {value!r}; write one of accept, drop, reject, ignore, or a "
                    "mapping with throttle/delay/loss/cut/block_after"
                )
            return {word: {} if word == "reject" else True}
        return value

    @field_validator("drop", "ignore")
    @classmethod
    def _one_verdict(cls, value: bool, info: ValidationInfo) -> bool:
        if value:
            for other in ("accept", "drop"):
                if other != info.field_name and info.data.get(other):
                    raise ValueError(f"{other} and {info.field_name} exclude each other; pick one")
        return value

    @field_validator("reject")
    @classmethod
    def _reject_alone(cls, value: RejectSpec | None, info: ValidationInfo) -> RejectSpec | None:
        if value is not None:
            for other in ("accept", "drop", "ignore"):
                if info.data.get(other):
                    raise ValueError(f"reject and {other} exclude each other; pick one")
        return value

    @field_validator("throttle", "delay", "loss", "cut")
    @classmethod
    def _not_with_verdict(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            for other in ("accept", "drop", "ignore", "reject"):
                if info.data.get(other):
                    raise ValueError(
                        f"{info.field_name} cannot be combined with {other}; {other} already decides every packet"
                    )
        return value

    @field_validator("block_after")
    @classmethod
    def _blocking(cls, value: BlockAfterSpec | None, info: ValidationInfo) -> BlockAfterSpec | None:
        if value is not None and (info.data.get("accept") or info.data.get("ignore")):
            raise ValueError("block_after needs a rule that blocks or impairs, not accept/ignore")
        return value

    @model_validator(mode="after")
    def _something(self) -> ActionSpec:
        if not (
            self.accept
            or self.drop
            or self.ignore
            or self.reject
            or self.throttle
            or self.delay
            or self.loss
            or self.cut
            or self.block_after
        ):
            raise ValueError(
                "empty action; write accept, drop, reject, ignore, or give throttle, delay, loss, cut or block_after"
            )
        return self

    @property
    def impairs(self) -> bool:
        return self.throttle is not None or self.delay is not None or self.loss is not None

    @property
    def effective_direction(self) -> PacketDirection:
        if self.direction is not None:
            return self.direction
        if self.impairs and self.cut is None:
            return PacketDirection.ORIGINAL
        return PacketDirection.BOTH


class RuleSpec(_Frozen):
    name: str = Field(pattern=_RULE_NAME_RE)
    """Appears in verdicts, counters and the event log."""

    @field_validator("name", mode="before")
    @classmethod
    def _yaml_words(cls, value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            raise ValueError(f"YAML read this name as {value!r} (yes/no/on/off/null are special); quote it")
        return value

    description: str = ""
    match: MatchSpec = Field(default_factory=lambda: MatchSpec.model_validate({}))
    sticky: bool = False
    """Once the rule matched a packet of a flow, it matches every later packet of that flow, in
    both directions: "decided on the first packet, then the 5-tuple is dropped" (C.10, A.4)."""
    action: ActionSpec


class PolicySettings(_Frozen):
    """Engine settings for the policy (``censor.policy``)."""

    inspect_packets: int = Field(20, ge=1, le=1_000_000)
    """Payload and hello matchers (``payload``, ``groups``) look at a flow's first N packets
    only; TSPU kept inspecting 15-20 packets after a TLS first packet (B.9). Labels, SNI and
    fingerprints are the classifier's and follow censor.inspect_packets."""
    max_events: int = Field(10_000, ge=0, le=10_000_000)
    """Event-log entries kept (the first ones: they say why a call died); later ones are counted."""
    max_residual: int = Field(65_536, ge=1, le=10_000_000)
    """Residual-block entries kept at once; the oldest is evicted (counted)."""
    max_held: int = Field(4096, ge=1, le=1_000_000)
    """Packets held (delayed or shaped) at once, all flows together; beyond, packets are dropped
    and counted (``queue-full``) rather than left for the kernel to drop unseen. Keep it below
    ``censor.queue_max_len``, which also holds packets waiting for a verdict."""


def _rules_unique(value: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
    seen: set[str] = set()
    for r in value:
        if r.name in seen:
            raise ValueError(f"rule name {r.name!r} is used twice; names appear in results")
        seen.add(r.name)
    return value


Rules = Annotated[tuple[RuleSpec, ...], AfterValidator(_rules_unique)]


def _lists_names(value: dict[str, ListSpec]) -> dict[str, ListSpec]:
    for name in value:
        if not _LIST_NAME_RE.match(name):
            raise ValueError(f"list name {name!r}: lowercase letters, digits, '-', '_' (at most 40)")
    return value


Lists = Annotated[dict[str, ListSpec], AfterValidator(_lists_names)]


class PolicySpec(_Frozen):
    """The policy keys of ``censor:``; ``CensorSpec`` carries the same three fields."""

    rules: Rules = ()
    lists: Lists = Field(default_factory=dict)
    policy: PolicySettings = Field(default_factory=lambda: PolicySettings.model_validate({}))


# --- cross references ---------------------------------------------------------------------------

Problem = tuple[tuple[str | int, ...], str, list[str]]


def _walk_matches(m: MatchSpec, path: tuple[str | int, ...]) -> Iterable[tuple[MatchSpec, tuple[str | int, ...]]]:
    yield m, path
    if m.not_ is not None:
        yield from _walk_matches(m.not_, (*path, "not"))
    for key, subs in (("any", m.any_), ("all", m.all_)):
        for i, sub in enumerate(subs):
            yield from _walk_matches(sub, (*path, key, i))


def policy_reference_problems(
    rules: Iterable[RuleSpec],
    lists: dict[str, ListSpec],
    *,
    nodes: Collection[str],
    known_labels: Collection[str],
    shipped_lists: Collection[str] = ("whatsapp", "telegram"),
    prefix: tuple[str | int, ...] = ("censor",),
) -> list[Problem]:
    """Names a schema cannot check alone: node names, list names, labels. (path, message,
    valid choices), paths starting with ``prefix`` as ``model.reference_problems`` returns them."""
    out: list[Problem] = []
    list_names = sorted(set(lists) | set(shipped_lists))
    labels = set(known_labels) | set(list_names)

    def check_addresses(spec: AddressSpec | None, path: tuple[str | int, ...]) -> None:
        if spec is None:
            return
        for entry in spec.addresses:
            if is_node_name(entry) and entry not in nodes:
                out.append(((*path, "addresses"), f"unknown node {entry!r}", sorted(nodes)))
        for name in spec.lists:
            if name not in lists and name not in shipped_lists:
                out.append(((*path, "list"), f"unknown address list {name!r}", list_names))

    for lname, ls in lists.items():
        for entry in ls.entries:
            if is_node_name(entry) and entry not in nodes:
                out.append(((*prefix, "lists", lname), f"unknown node {entry!r}", sorted(nodes)))
    for i, rule in enumerate(rules):
        for m, path in _walk_matches(rule.match, (*prefix, "rules", i, "match")):
            for key, spec in (("src", m.src), ("dst", m.dst), ("addr", m.addr)):
                check_addresses(spec, (*path, key))
            for label in m.labels.any_ if m.labels is not None else ():
                if label not in labels:
                    out.append(((*path, "labels"), f"unknown label {label!r}", sorted(labels)))
    return out
