"""Pieces every scenario schema module shares: durations, rates and the frozen base model.

It imports no other ``testbed.scenario`` module, so ``model.py``, ``call_schema.py`` and
``expect_schema.py`` can all import it without a cycle (``model.py`` imports the other two).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "NAME_PATTERN",
    "NODE_NAME_RE",
    "Duration",
    "Rate",
    "_Frozen",
    "parse_duration",
    "parse_rate",
]

_DURATION_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|min|h)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE_RE = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<prefix>[kKmMgG]?)(?P<unit>bit/s|bps|bit|b/s)?\s*$"
)
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
NODE_NAME_RE = r"^[a-z][a-z0-9_]{0,19}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def parse_duration(value: Any) -> Any:
    """``5`` / ``5.5`` / ``"5s"`` / ``"250ms"`` / ``"2m"`` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5s' or '250ms'")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m["num"]) * _UNIT_S[m["unit"]]
    raise ValueError(f"{value!r} is not a duration; write e.g. 5, '5s', '250ms' or '2m'")


def parse_rate(value: Any) -> Any:
    """``64000`` / ``"64k"`` / ``"64kbit"`` / ``"1.5mbps"`` / ``"2Mbit/s"`` -> bits per second.

    Bits, never bytes: ``64kbps`` is 64 000 bit/s (as tc and iperf3 write rates)."""
    if isinstance(value, bool):
        raise ValueError("a rate is bits per second, e.g. 64000 or '64kbit'")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _RATE_RE.match(value)
        if m:
            return float(m["num"]) * _PREFIX[m["prefix"].lower()]
    raise ValueError(f"{value!r} is not a rate; write bits per second, e.g. 64000, '64kbit' or '2mbit'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Rate = Annotated[float, BeforeValidator(parse_rate), Field(gt=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
