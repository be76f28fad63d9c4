"""One attempt of a repeated probe (``probes[].attempts`` in the result JSON)."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.records.json import JsonObject, RecordError, number, object_of

__all__ = ["ProbeAttempt"]


@dataclass(frozen=True, slots=True)
class ProbeAttempt:
    t_s: float
    """When it started, on the probes' clock (``timeline_origin.calls_phase``)."""
    exit: int | None
    """Its exit code; None: it ran out of its ``timeout`` and was stopped."""
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit == 0

    def to_json(self) -> JsonObject:
        return {"t_s": round(self.t_s, 3), "exit": self.exit, "duration_s": round(self.duration_s, 3)}

    @classmethod
    def from_json(cls, raw: object) -> ProbeAttempt:
        what = "probe attempt"
        obj = object_of(raw, what)
        code = obj.get("exit")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise RecordError(f"{what}: 'exit' must be an integer or null, got {code!r}")
        return cls(number(obj, "t_s", what), code, number(obj, "duration_s", what))
