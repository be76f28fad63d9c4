"""What a scenario says about one call: :class:`CallOptions`, a frozen, validated value.

It travels to the endpoint processes as JSON (``to_json``/``from_json``), so every field is a plain
JSON value.  New fields get defaults, so older scenario files and configs keep working.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# Call names end up in file names (endpoint logs) and in result JSON keys.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """One call of a scenario.

    ``duration_s`` is media time counted from the moment both endpoints report connectionState
    "connected"; set-up and hang-up come on top of it.
    """

    name: str
    duration_s: float
    audio: bool = True
    """Synthetic Opus tone each way, 20 ms frames paced in real time (RFC 7587: 48 kHz clock)."""
    video: bool = False
    """Synthetic VP8 frames each way, ``video_width`` x ``video_height`` at ``video_fps``."""
    data_channel: bool = True
    """An ordered, reliable data channel; each side sends a message every ``data_interval_s``."""
    connect_timeout_s: float = 15.0
    """From the moment the caller is told to dial until both endpoints must be connected."""
    data_interval_s: float = 0.1
    data_message_bytes: int = 100
    video_width: int = 320
    video_height: int = 240
    video_fps: int = 15
    drain_s: float = 0.2
    """After media stops at hang-up, how long an endpoint waits for in-flight packets before it
    reads its final statistics (so sent and received counts describe the same packets)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"call name {self.name!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
                " and start with a letter or digit"
            )
        _positive("duration_s", self.duration_s, allow_zero=True)
        _positive("connect_timeout_s", self.connect_timeout_s)
        _positive("data_interval_s", self.data_interval_s)
        _positive("drain_s", self.drain_s, allow_zero=True)
        if not 16 <= self.data_message_bytes <= 65536:
            raise ValueError(f"data_message_bytes must be 16..65536, got {self.data_message_bytes}")
        # VP8 needs even dimensions for 4:2:0 chroma subsampling.
        for key, value, low, high in (
            ("video_width", self.video_width, 16, 1920),
            ("video_height", self.video_height, 16, 1080),
            ("video_fps", self.video_fps, 1, 60),
        ):
            if not low <= value <= high:
                raise ValueError(f"{key} must be {low}..{high}, got {value}")
        if self.video_width % 2 or self.video_height % 2:
            raise ValueError("video_width and video_height must be even (4:2:0 chroma)")
        if not (self.audio or self.video or self.data_channel):
            raise ValueError("a call needs at least one of audio, video, data_channel")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown call option(s): {', '.join(sorted(unknown))}")
        return cls(**dict(data))


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
