"""The censor process's stdout lines: one JSON object per line, ``"event"`` names the message.

Written by ``testbed.censor.main`` (:func:`encode`), read by ``testbed.censor.control``
(:func:`decode`)::

    {"event": "ready", "queue_num": 0, "t0": T}      rules installed, queue bound: traffic may start
    {"event": "stats", "t_s", "packets", "bytes", "flows", "held"}   every second
    {"event": "final", "file": F[, "error": E]}      after SIGTERM: the result's ``censor`` section
                                                     is in F; ``error`` if the engine failed

``t0`` is the censor's time origin (CLOCK_MONOTONIC): its event times count from it.  The summary
goes through a file because it grows with flows and events, and a pipe read line by line has a
line limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from testbed.records.json import JsonObject, RecordError, integer, number, object_of, optional_string, string

__all__ = [
    "CensorFinal",
    "CensorMessage",
    "CensorMessageType",
    "CensorReady",
    "CensorStats",
    "decode",
    "encode",
    "from_json",
]


class CensorMessageType(StrEnum):
    READY = "ready"
    STATS = "stats"
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class CensorReady:
    queue_num: int
    t0: float
    type: ClassVar[CensorMessageType] = CensorMessageType.READY

    def to_json(self) -> JsonObject:
        return {"event": self.type.value, "queue_num": self.queue_num, "t0": self.t0}


@dataclass(frozen=True, slots=True)
class CensorStats:
    t_s: float
    packets: int
    bytes: int
    flows: int
    held: int
    type: ClassVar[CensorMessageType] = CensorMessageType.STATS

    def to_json(self) -> JsonObject:
        return {
            "event": self.type.value,
            "t_s": self.t_s,
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "held": self.held,
        }


@dataclass(frozen=True, slots=True)
class CensorFinal:
    file: str
    error: str | None = None
    type: ClassVar[CensorMessageType] = CensorMessageType.FINAL

    def to_json(self) -> JsonObject:
        out: JsonObject = {"event": self.type.value, "file": self.file}
        if self.error is not None:  # absent on success, as before this record existed
            out["error"] = self.error
        return out


CensorMessage = CensorReady | CensorStats | CensorFinal


def from_json(raw: object) -> CensorMessage:
    """A message from a decoded JSON value; :class:`RecordError` if it is not one.  Unknown keys
    are ignored (a newer censor may add some)."""
    obj = object_of(raw, "censor message")
    kind = obj.get("event")
    try:
        mtype = CensorMessageType(kind if isinstance(kind, str) else repr(kind))
    except ValueError:
        raise RecordError(f"censor message: unknown event {kind!r}") from None
    what = f"censor {mtype.value}"
    match mtype:
        case CensorMessageType.READY:
            return CensorReady(queue_num=integer(obj, "queue_num", what), t0=number(obj, "t0", what))
        case CensorMessageType.STATS:
            return CensorStats(
                t_s=number(obj, "t_s", what),
                packets=integer(obj, "packets", what),
                bytes=integer(obj, "bytes", what),
                flows=integer(obj, "flows", what),
                held=integer(obj, "held", what),
            )
        case CensorMessageType.FINAL:
            return CensorFinal(file=string(obj, "file", what), error=optional_string(obj, "error", what))


def encode(message: CensorMessage) -> str:
    """One line (with its newline); compact, so a stats line stays short."""
    return json.dumps(message.to_json(), separators=(",", ":"), allow_nan=False) + "\n"


def decode(line: bytes | str) -> CensorMessage:
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RecordError(f"censor message: not a JSON line: {exc}") from None
    return from_json(raw)
