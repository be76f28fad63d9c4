"""The endpoint's config file: written by the call session (``session.run_call``), read by either
engine's endpoint process (aiortc's ``testbed.calls.endpoint``, ``testbed.calls.chromium.endpoint``).

Kept apart from both endpoints so that reading it imports neither (aiortc's import alone is a
second of CPU per endpoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from testbed.calls.options import CallOptions
from testbed.calls.signalling import Role
from testbed.records.json import JsonObject

__all__ = ["EndpointConfig"]


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    role: Role
    socket: Path
    options: CallOptions
    t0: float | None = None
    """CLOCK_MONOTONIC start of the call (shared by all processes): origin of per-second counts."""
    zygote: Path | None = None
    """The run's ``testbed.calls.zygote`` socket, if any: ``forkclient`` asks it for the endpoint."""

    @classmethod
    def load(cls, path: Path) -> EndpointConfig:
        raw = json.loads(path.read_text())
        return cls(
            role=Role(raw["role"]),
            socket=Path(raw["socket"]),
            options=CallOptions.from_json(raw["options"]),
            t0=float(raw["t0"]) if raw.get("t0") is not None else None,
            zygote=Path(raw["zygote"]) if raw.get("zygote") is not None else None,
        )

    def to_json(self) -> JsonObject:
        return {
            "role": self.role.value,
            "socket": str(self.socket),
            "options": self.options.to_json(),
            "t0": self.t0,
            "zygote": None if self.zygote is None else str(self.zygote),
        }
