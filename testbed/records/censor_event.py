"""One entry of the censor's event log (the result's ``censor.events``).

Wire shape (fields only added)::

    {"t": 1.234, "event": "match", "rule": "sni-reset", "flow": "198.18.1.2:40000 <-> 198.18.2.2:443",
     "endpoints": ["198.18.1.2:40000", "198.18.2.2:443"],     # added: the flow, initiator first
     <details: transport, direction, packet, labels, sni, key, duration_s, then, remaining_s, ...>}

``t`` is seconds since the censor started (``timeline_origin.censor``).  ``flow`` is kept for
readers of older results; new readers use ``endpoints`` (a result written before it existed is
read from ``flow``).  ``event`` stays a string so a report can still show an event kind newer
than itself; the kinds testbed writes today are :class:`EventKind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from testbed.records.json import JsonObject, JsonValue, RecordError, number, object_of, optional_string, string

__all__ = ["FLOW_SEPARATOR", "CensorEvent", "EventKind"]

FLOW_SEPARATOR = " <-> "

_FIXED = ("t", "event", "rule", "flow", "endpoints")


class EventKind(StrEnum):
    MATCH = "match"  # the first packet of a flow a rule matched
    BLOCK = "block"  # a residual block started (block_after)
    RESIDUAL = "residual"  # the first packet of a flow a residual block caught
    CUT = "cut"  # a flow cut after N packets / bytes / seconds
    IGNORE = "ignore"  # the DPI gave up on a flow (``ignore`` action)


@dataclass(frozen=True, slots=True)
class CensorEvent:
    t: float
    event: str
    rule: str | None = None
    endpoints: tuple[str, str] | None = None
    """The flow's (initiator, responder), or ``None`` for an event about no flow."""
    details: Mapping[str, JsonValue] = field(default_factory=dict)
    """The rest of the entry, by event kind (``match``: transport, direction, packet, labels, sni;
    ``block``: key, duration_s, then; ``residual``: remaining_s; ``cut``: packets, bytes, age_s)."""

    @property
    def flow(self) -> str | None:
        """``"initiator <-> responder"``, as the log has always spelled it."""
        return None if self.endpoints is None else FLOW_SEPARATOR.join(self.endpoints)

    def to_json(self) -> JsonObject:
        out: JsonObject = {"t": self.t, "event": self.event, "rule": self.rule, "flow": self.flow}
        out.update(self.details)
        if self.endpoints is not None:
            out["endpoints"] = list(self.endpoints)
        return out

    @classmethod
    def from_json(cls, raw: object) -> CensorEvent:
        obj = object_of(raw, "censor event")
        return cls(
            t=number(obj, "t", "censor event"),
            event=string(obj, "event", "censor event"),
            rule=optional_string(obj, "rule", "censor event"),
            endpoints=_endpoints(obj),
            details={k: v for k, v in obj.items() if k not in _FIXED},
        )


def _endpoints(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    eps = obj.get("endpoints")
    if isinstance(eps, list) and len(eps) == 2 and all(isinstance(e, str) for e in eps):
        return eps[0], eps[1]
    flow = obj.get("flow")
    if flow is None:
        return None
    if isinstance(flow, str):
        a, sep, b = flow.partition(FLOW_SEPARATOR)
        if sep and a and b:
            return a, b
    raise RecordError(f"censor event: 'flow' must be 'a{FLOW_SEPARATOR}b' or null, got {flow!r}")
