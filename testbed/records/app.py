"""An app's result: one long-running user process of a scenario (``apps`` in the result JSON).

Times count from ``timeline_origin.apps`` (CLOCK_MONOTONIC when the run began starting its apps),
so the report can place them next to the censor's events and the probes' attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.records.json import JsonObject, RecordError, number, object_of, optional_string, string

__all__ = ["AppInfo", "AppResult"]


@dataclass(frozen=True, slots=True)
class AppResult:
    name: str
    node: str
    started_s: float
    ready_s: float | None
    """When it counted as ready; None: it never did."""
    exit_code: int | None
    """None: still running when stopped and its end was not seen; negative: killed by that signal
    (-15: the run's SIGTERM, -9: SIGKILL after the grace period)."""
    alive_at_end: bool
    """Running when the run began stopping it (an app that exited earlier failed the run, except a
    set-up step with ``ready: {exit: N}``)."""
    log: str
    """Its stdout + stderr (bounded: the first 1 MiB, then the last lines) in the run directory."""
    dropped_bytes: int = 0
    """Output left out of the log (between its first MiB and its last lines)."""

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "node": self.node,
            "started_s": round(self.started_s, 3),
            "ready_s": None if self.ready_s is None else round(self.ready_s, 3),
            "exit_code": self.exit_code,
            "alive_at_end": self.alive_at_end,
            "log": self.log,
            "dropped_bytes": self.dropped_bytes,
        }

    @classmethod
    def from_json(cls, raw: object) -> AppResult:
        what = "app result"
        obj = object_of(raw, what)
        ready = obj.get("ready_s")
        code = obj.get("exit_code")
        alive = obj.get("alive_at_end")
        dropped = obj.get("dropped_bytes", 0)
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise RecordError(f"{what}: 'exit_code' must be an integer or null, got {code!r}")
        if not isinstance(alive, bool):
            raise RecordError(f"{what}: 'alive_at_end' must be true or false, got {alive!r}")
        if isinstance(dropped, bool) or not isinstance(dropped, int):
            raise RecordError(f"{what}: 'dropped_bytes' must be an integer, got {dropped!r}")
        log = optional_string(obj, "log", what) or ""
        return cls(
            name=string(obj, "name", what),
            node=string(obj, "node", what),
            started_s=number(obj, "started_s", what),
            ready_s=None if ready is None else number(obj, "ready_s", what),
            exit_code=code,
            alive_at_end=alive,
            log=log,
            dropped_bytes=dropped,
        )


@dataclass(frozen=True, slots=True)
class AppInfo:
    """A running app, as ``testbed up`` lists it (in its ``state.json``)."""

    name: str
    node: str
    pid: int | None
    log: str

    def to_json(self) -> JsonObject:
        return {"name": self.name, "node": self.node, "pid": self.pid, "log": self.log}

    @classmethod
    def from_json(cls, raw: object) -> AppInfo:
        what = "app info"
        obj = object_of(raw, what)
        pid = obj.get("pid")
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise RecordError(f"{what}: 'pid' must be an integer or null, got {pid!r}")
        return cls(string(obj, "name", what), string(obj, "node", what), pid, string(obj, "log", what))
