"""The ``expect:`` entries and the ``verdict:`` thresholds of a scenario (docs/calls.md).

``Expectation`` is a superset of the first one (``call``, ``connected``).  Bounds take a number
or ``{min, max}``: ``loss_pct: 5`` means at most 5 %, ``mos: 3.5`` means at least 3.5 (the
direction in which each metric gets worse decides what a bare number means).

An entry with ``censor:`` checks the censor's counters instead of a call (``CensorCheck``): the
mechanism behind an outcome, e.g. that rule ``sni-i`` really rewrote a reply into an RST.  A bare
number there is an exact count (``dropped: 0``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from testbed.scenario.common import Duration, _Frozen

__all__ = [
    "Bound",
    "CandidateCheck",
    "CandidateType",
    "CensorCheck",
    "CountBound",
    "DropCause",
    "Expectation",
    "Outcome",
    "VerdictSettings",
    "Window",
]


class Outcome(str, Enum):
    OK = "ok"
    DEGRADED = "degraded"
    BLOCKED = "blocked"


class CandidateType(str, Enum):
    HOST = "host"
    SRFLX = "srflx"
    PRFLX = "prflx"
    RELAY = "relay"


class CandidateTransport(str, Enum):
    """How the selected pair's local candidate reaches its peer or relay."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class Bound(_Frozen):
    min: float | None = None
    max: float | None = None

    @field_validator("max")
    @classmethod
    def _ordered(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"max {value:g} is below min {low:g}")
        return value

    @model_validator(mode="after")
    def _something(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self, unit: str = "") -> str:
        if self.min is not None and self.max is not None:
            return f"between {self.min:g}{unit} and {self.max:g}{unit}"
        if self.max is not None:
            return f"<= {self.max:g}{unit}"
        return f">= {self.min:g}{unit}"


def _bound(default: str) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a bound is a number or {min: .., max: ..}")
        if isinstance(value, (int, float)):
            return {default: value}
        return value

    return convert


class DurationBound(Bound):
    """Like :class:`Bound`, in seconds, with durations accepted ('2s', '500ms')."""

    min: Duration | None = None
    max: Duration | None = None


class Window(_Frozen):
    """A part of the call, in seconds since the call was placed (its ``start``)."""

    from_: Duration = Field(0.0, alias="from")
    until: Duration | None = None

    @field_validator("until")
    @classmethod
    def _ordered(cls, value: float | None, info: ValidationInfo) -> float | None:
        start = info.data.get("from_")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"until ({value:g} s) must be after from ({start:g} s)")
        return value

    def describe(self) -> str:
        end = f"{self.until:g}s" if self.until is not None else "end"
        return f"[{self.from_:g}s, {end})"


class CandidateFamily(str, Enum):
    """The IP version of the selected pair (``ip: dual`` scenarios)."""

    V4 = "v4"
    V6 = "v6"


class CandidateCheck(_Frozen):
    type: CandidateType | None = None
    transport: CandidateTransport | None = None
    family: CandidateFamily | None = None

    @model_validator(mode="after")
    def _something(self) -> CandidateCheck:
        if self.type is None and self.transport is None and self.family is None:
            raise ValueError("give type (host, srflx, relay), transport (udp, tcp, tls), family (v4, v6) or some")
        return self


class CountBound(_Frozen):
    """A bound on a counter: ``{min: N}``, ``{max: N}``, both, or a bare ``N`` (exactly N)."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a count bound is a whole number (exact) or {min: N, max: N}")
        if isinstance(value, int):
            return {"min": value, "max": value}
        return value

    @field_validator("max")
    @classmethod
    def _ordered(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"max {value} is below min {low}")
        return value

    @model_validator(mode="after")
    def _something(self) -> CountBound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        return self

    def holds(self, value: int) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"== {self.min}"
        if self.min is not None and self.max is not None:
            return f"between {self.min} and {self.max}"
        if self.max is not None:
            return f"<= {self.max}"
        return f">= {self.min}"


class DropCause(str, Enum):
    """Why the censor did not let a packet through (``drops`` in docs/policy.md, "Results")."""

    DROP = "drop"
    REJECT = "reject"
    CUT = "cut"
    LOSS = "loss"
    POLICED = "policed"
    BACKLOG = "backlog"
    QUEUE_FULL = "queue-full"
    RESIDUAL = "residual"


# The per-rule counters of the censor's summary (``censor.rules[]``), in report order.
RULE_COUNTERS = (
    "matched_flows", "packets", "bytes", "accepted", "dropped", "delayed", "rejected", "rewritten",
)  # fmt: skip


class CensorCheck(_Frozen):
    """Bounds on the censor's counters: one rule's (``rule: NAME``), or without ``rule`` the
    whole censor's (every rule plus the packets no rule matched)."""

    rule: str | None = None
    matched_flows: CountBound | None = None
    """Flows the rule matched (without ``rule``: matched by any rule)."""
    packets: CountBound | None = None
    bytes: CountBound | None = None
    accepted: CountBound | None = None
    dropped: CountBound | None = None
    delayed: CountBound | None = None
    """Packets held (delay, shaping) before release."""
    rejected: CountBound | None = None
    """Packets answered with an RST or ICMP error, or rewritten into an RST."""
    rewritten: CountBound | None = None
    """Server replies rewritten into an RST/ACK (``reject: rewrite``, TSPU SNI-I)."""
    drops: dict[DropCause, CountBound] = Field(default_factory=dict)
    """Packets not let through, by cause: ``{residual: {min: 1}}`` (a residual block caught some)."""
    flows: CountBound | None = None
    """Only without ``rule``: flows the censor saw."""

    @model_validator(mode="after")
    def _something(self) -> CensorCheck:
        if self.flows is not None and self.rule is not None:
            raise ValueError("`flows` counts every flow the censor saw; for one rule write `matched_flows`")
        if self.flows is None and not self.drops and all(getattr(self, n) is None for n in RULE_COUNTERS):
            raise ValueError(
                "a censor check needs at least one counter: "
                + ", ".join((*RULE_COUNTERS, "drops", "flows"))
                + " (e.g. `rewritten: {min: 1}`)"
            )
        return self

    def bounds(self) -> list[tuple[str, CountBound]]:
        """(counter, bound) in report order; ``drops.CAUSE`` for the causes."""
        out = [(n, b) for n in RULE_COUNTERS if (b := getattr(self, n)) is not None]
        out += [(f"drops.{cause.value}", b) for cause, b in self.drops.items()]
        if self.flows is not None:
            out.append(("flows", self.flows))
        return out


class Endpoint(str, Enum):
    CALLER = "caller"
    CALLEE = "callee"


_CHECKS = (
    "outcome", "connected", "setup", "survives", "loss_pct", "jitter_ms", "rtt_ms", "mos",
    "candidate", "bitrate_kbps", "audio_gap_ms", "freezes", "message_loss_pct",
)  # fmt: skip


class Expectation(_Frozen):
    """One ``expect:`` entry: checks about one call (all its instances if it has a ``count``),
    or every call when ``call`` is omitted."""

    call: str | None = None
    window: Window | None = None
    """Only for loss, jitter, rtt, mos, bitrate, audio gaps, freezes, message loss: the seconds
    of the call they are measured over."""
    endpoint: Endpoint | None = None
    """Whose received media the quality bounds look at; default: both (the worse one)."""
    outcome: tuple[Outcome, ...] | None = None
    connected: bool | None = None
    setup: DurationBound | None = None
    """Offer sent -> both endpoints connected, in seconds ('2s', '500ms')."""
    survives: Duration | None = None
    """Connected, and media kept flowing for at least this long."""
    loss_pct: Bound | None = None
    jitter_ms: Bound | None = None
    rtt_ms: Bound | None = None
    mos: Bound | None = None
    bitrate_kbps: Bound | None = None
    audio_gap_ms: Bound | None = None
    """Longest audio gap."""
    freezes: Bound | None = None
    """Video freezes (W3C definition) counted in the window."""
    message_loss_pct: Bound | None = None
    candidate: CandidateCheck | None = None
    censor: CensorCheck | None = None
    """Counters of the censor instead of a call: ``censor: {rule: NAME, rewritten: {min: 1}}``."""

    @field_validator("outcome", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError("give at least one of ok, degraded, blocked")
        return value

    @field_validator("setup", mode="before")
    @classmethod
    def _setup_shorthand(cls, value: Any) -> Any:
        return value if isinstance(value, dict) or value is None else {"max": value}

    @field_validator("loss_pct", "jitter_ms", "rtt_ms", "audio_gap_ms", "freezes", "message_loss_pct", mode="before")
    @classmethod
    def _at_most(cls, value: Any) -> Any:
        return _bound("max")(value)

    @field_validator("mos", "bitrate_kbps", mode="before")
    @classmethod
    def _at_least(cls, value: Any) -> Any:
        return _bound("min")(value)

    @field_validator("mos")
    @classmethod
    def _mos_range(cls, value: Bound | None) -> Bound | None:
        for v in (value.min, value.max) if value else ():
            if v is not None and not 1.0 <= v <= 4.5:
                raise ValueError("MOS runs from 1 to 4.5 (E-model)")
        return value

    @field_validator("candidate", mode="before")
    @classmethod
    def _candidate_shorthand(cls, value: Any) -> Any:
        # `candidate: relay` or `candidate: relay/tls`
        if isinstance(value, str):
            kind, _, transport = value.partition("/")
            return {"type": kind, **({"transport": transport} if transport else {})}
        return value

    @model_validator(mode="after")
    def _has_a_check(self) -> Expectation:
        if self.censor is not None:
            mixed = [n for n in ("call", "window", "endpoint", *_CHECKS) if getattr(self, n) is not None]
            if mixed:
                raise ValueError(
                    f"a `censor:` entry checks the censor's counters only; move {', '.join(mixed)} "
                    "to an entry of its own (`- call: ...`)"
                )
            return self
        if all(getattr(self, name) is None for name in _CHECKS):
            raise ValueError(
                "an expectation needs at least one check: "
                + ", ".join(_CHECKS)
                + " (e.g. `connected: true`), or `censor:` for the censor's counters"
            )
        return self


class VerdictSettings(_Frozen):
    """The scenario's ``verdict:`` block: when a connected call counts as ``degraded``, and when
    a call that worked counts as dead (``blocked``).  Defaults follow ITU-T G.114 (one-way delay
    under 150 ms; 400 ms round trip is where conversation suffers) and G.107 (MOS 3.6, "some
    users dissatisfied").
    """

    max_loss_pct: float = Field(5.0, ge=0, le=100)
    max_jitter_ms: float = Field(50.0, ge=0)
    max_rtt_ms: float = Field(400.0, ge=0)
    min_mos: float = Field(3.6, ge=1, le=4.5)
    max_setup: Duration = 5.0
    max_audio_gap: Duration = 1.0
    """A longer silence in received audio makes the call degraded."""
    max_freezes: int = Field(3, ge=0)
    dead_after: Duration = Field(3.0, gt=0)
    """No media received in either direction for this long: the call died (time to failure);
    if media comes back later the call ``recovered``."""
