"""What the policy reports: per-rule counters and a bounded event log of its decisions.

The log keeps the *first* ``max_events`` entries (the first match of each flow, cuts, residual
blocks: what explains why a call died) and counts the ones it had to leave out, so a long run
cannot grow the censor's memory without bound and a reader knows something is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.records.censor_event import CensorEvent, EventKind
from testbed.records.json import JsonObject, JsonValue

__all__ = ["EventLog", "RuleCounters"]


@dataclass(slots=True)
class RuleCounters:
    matched_flows: int = 0
    packets: int = 0
    bytes: int = 0
    accepted: int = 0
    dropped: int = 0
    delayed: int = 0
    rejected: int = 0
    rewritten: int = 0
    # Why packets did not get through (dropped or rejected): drop, reject, cut, loss, policed,
    # backlog (shaping queue full), residual.
    drops: dict[str, int] = field(default_factory=dict)
    max_hold_s: float = 0.0

    def drop(self, cause: str) -> None:
        self.dropped += 1
        self.drops[cause] = self.drops.get(cause, 0) + 1

    def reject(self, cause: str) -> None:
        self.rejected += 1
        self.drops[cause] = self.drops.get(cause, 0) + 1

    def as_dict(self) -> JsonObject:
        return {
            "matched_flows": self.matched_flows,
            "packets": self.packets,
            "bytes": self.bytes,
            "accepted": self.accepted,
            "dropped": self.dropped,
            "delayed": self.delayed,
            "rejected": self.rejected,
            "rewritten": self.rewritten,
            "drops": dict(sorted(self.drops.items())),
            "max_hold_s": round(self.max_hold_s, 6),
        }


class EventLog:
    __slots__ = ("entries", "max_entries", "dropped", "start")

    def __init__(self, max_entries: int, start: float) -> None:
        self.entries: list[CensorEvent] = []
        self.max_entries = max_entries
        self.dropped = 0
        self.start = start

    def add(
        self, now: float, event: EventKind, rule: str | None, endpoints: tuple[str, str], **details: JsonValue
    ) -> None:
        if len(self.entries) >= self.max_entries:
            self.dropped += 1
            return
        self.entries.append(CensorEvent(round(now - self.start, 6), event, rule, endpoints, details))
