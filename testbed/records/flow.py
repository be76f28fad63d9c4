"""One flow as reported: the censor's ``censor.flows`` and ``testbed classify``'s flows alike.

The censor engine (``core.engine.CensorEngine.flow_record``) and ``testbed classify``
(``analysis.classify.flow_to_json``) build the same :class:`FlowRecord` and write the same JSON
object, with every key always present (the union of what each wrote before this record)::

    {"transport": "udp", "endpoints": [initiator, responder], "initiator": "198.18.1.2:40000",
     "responder": "198.18.2.2:50000",
     "packets", "bytes", "packets_orig", "packets_reply", "bytes_orig", "bytes_reply",
     "packets_by_direction": [orig, reply], "bytes_by_direction": [orig, reply],
     "labels": [...], "sni": str | null, "alpn": [...], "fingerprints": {"ja3": ...},
     "first_seen", "last_seen",          # the source's clock: pcap time / CLOCK_MONOTONIC
     "first_seen_s", "last_seen_s",      # seconds since the censor started (classify: its
                                         # capture's clock, = first_seen / last_seen)
     "ended": "idle" | "evicted" | "closed" | null,   # why it left the flow table; null: still open
     "verdicts": {"accept": n, ...},     # the censor's actions on it ({} in classify)
     "rule": first rule that matched | null, "rules": {rule: packets}, "settled": bool, "held": n}

``endpoints`` is ``[initiator, responder]`` in both (the censor used to sort the pair).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.records.json import (
    JsonObject,
    RecordError,
    integer,
    number,
    object_of,
    optional_string,
    string,
)

__all__ = ["FlowRecord"]


@dataclass(frozen=True, slots=True)
class FlowRecord:
    transport: str
    initiator: str
    responder: str
    packets_orig: int
    packets_reply: int
    bytes_orig: int
    bytes_reply: int
    first_seen: float
    """The source's clock: the capture's timestamps, or the censor's CLOCK_MONOTONIC."""
    last_seen: float
    first_seen_s: float
    """Seconds since the censor started; in ``testbed classify``, the capture's own clock
    (the same as ``first_seen``: a capture's timestamps are already its own time axis)."""
    last_seen_s: float
    labels: tuple[str, ...] = ()
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    ended: str | None = None
    """``core.flow.EndReason`` value (a string here: records import nothing from core)."""
    verdicts: Mapping[str, int] = field(default_factory=dict)
    rule: str | None = None
    rules: Mapping[str, int] = field(default_factory=dict)
    settled: bool = False
    held: int = 0

    @property
    def packets(self) -> int:
        return self.packets_orig + self.packets_reply

    @property
    def bytes(self) -> int:
        return self.bytes_orig + self.bytes_reply

    def to_json(self) -> JsonObject:
        return {
            "transport": self.transport,
            "endpoints": [self.initiator, self.responder],
            "initiator": self.initiator,
            "responder": self.responder,
            "packets": self.packets,
            "bytes": self.bytes,
            "packets_orig": self.packets_orig,
            "packets_reply": self.packets_reply,
            "bytes_orig": self.bytes_orig,
            "bytes_reply": self.bytes_reply,
            "packets_by_direction": [self.packets_orig, self.packets_reply],
            "bytes_by_direction": [self.bytes_orig, self.bytes_reply],
            "labels": list(self.labels),
            "sni": self.sni,
            "alpn": list(self.alpn),
            "fingerprints": dict(self.fingerprints),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "first_seen_s": self.first_seen_s,
            "last_seen_s": self.last_seen_s,
            "ended": self.ended,
            "verdicts": dict(self.verdicts),
            "rule": self.rule,
            "rules": dict(self.rules),
            "settled": self.settled,
            "held": self.held,
        }

    @classmethod
    def from_json(cls, raw: object) -> FlowRecord:
        what = "flow record"
        obj = object_of(raw, what)
        return cls(
            transport=string(obj, "transport", what),
            initiator=string(obj, "initiator", what),
            responder=string(obj, "responder", what),
            packets_orig=integer(obj, "packets_orig", what),
            packets_reply=integer(obj, "packets_reply", what),
            bytes_orig=integer(obj, "bytes_orig", what),
            bytes_reply=integer(obj, "bytes_reply", what),
            first_seen=number(obj, "first_seen", what),
            last_seen=number(obj, "last_seen", what),
            first_seen_s=number(obj, "first_seen_s", what),
            last_seen_s=number(obj, "last_seen_s", what),
            labels=_strings(obj, "labels"),
            sni=optional_string(obj, "sni", what),
            alpn=_strings(obj, "alpn"),
            fingerprints=_mapping(obj, "fingerprints", str),
            ended=optional_string(obj, "ended", what),
            verdicts=_mapping(obj, "verdicts", int),
            rule=optional_string(obj, "rule", what),
            rules=_mapping(obj, "rules", int),
            settled=obj.get("settled") is True,
            held=integer(obj, "held", what, default=0),
        )


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"flow record: {key!r} must be a list of strings, got {value!r}")
    return tuple(value)


def _mapping(obj: Mapping[str, Any], key: str, kind: type) -> JsonObject:
    value = obj.get(key, {})
    if not isinstance(value, Mapping) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value.values()
    ):
        raise RecordError(f"flow record: {key!r} must map names to {kind.__name__}, got {value!r}")
    return dict(value)
