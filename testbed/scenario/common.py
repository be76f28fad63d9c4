"""Pieces every scenario schema module shares: durations, rates and the frozen base model.

It imports no other ``testbed.scenario`` module, so ``model.py``, ``call_schema.py`` and
``expect_schema.py`` can all import it without a cycle (``model.py`` imports the other two).

It is also the one place where numbers are kept finite and sane.  YAML has ``.inf`` and ``.nan``
and unbounded integers; an infinite duration or rate validated fine and then failed deep inside a
run (after the network was built) or made it run for ever.  So every model refuses ``inf``/``nan``
in float fields (``allow_inf_nan=False`` on ``_Frozen``), numbers too large for a float are a
validation error rather than an ``OverflowError``, and durations, timeouts and rates have upper
bounds (``MAX_DURATION_S``, ``MAX_RATE_BIT_S``) far above any experiment but low enough that the
arithmetic of timers and token buckets stays exact.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "NAME_PATTERN",
    "NODE_NAME_RE",
    "Side",
    "Duration",
    "MAX_DURATION_S",
    "MAX_RATE_BIT_S",
    "Rate",
    "Timeout",
    "finite_number",
    "_Frozen",
    "parse_duration",
    "parse_rate",
    "rate_text_bytes_per_s",
]

_DURATION_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|min|h)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUM = r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
_RATE_RE = re.compile(rf"^\s*{_NUM}\s*(?P<unit>[A-Za-z]+(?:/s)?)\s*$")
_BIT_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_BYTE_RATE_UNITS = {
    "B/s": 1.0, "KB/s": 1e3, "kB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9,
    "KiB/s": 1024.0, "MiB/s": 1024.0**2,
}  # fmt: skip
MAX_DURATION_S = 7 * 24 * 3600.0
"""The longest duration, time or timeout a scenario may give: a week."""
MAX_RATE_BIT_S = 1e12
"""The highest rate: 1 Tbit/s, far above what veths between namespaces carry."""
NODE_NAME_RE = r"^[a-z][a-z0-9_]{0,19}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Side(str, Enum):
    """Which side of the censor a node is on; TSPU only censors flows initiated from inside."""

    INSIDE = "inside"
    OUTSIDE = "outside"


def finite_number(value: int | float, what: str = "a number") -> float:
    """``value`` as a finite float, or ValueError (YAML's ``.inf``/``.nan``, a 400-digit integer)."""
    try:
        out = float(value)
    except OverflowError:
        raise ValueError(f"{what} must be a finite number; {value!r:.40} is too large") from None
    if not math.isfinite(out):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return out


def parse_duration(value: Any) -> Any:
    """``5`` / ``5.5`` / ``"5s"`` / ``"250ms"`` / ``"2m"`` -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5s' or '250ms'")
    if isinstance(value, (int, float)):
        return finite_number(value, "a duration")
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return finite_number(float(m["num"]) * _UNIT_S[m["unit"]], "a duration")
    raise ValueError(f"{value!r} is not a duration; write e.g. 5, '5s', '250ms' or '2m'")


def rate_text_bytes_per_s(value: str) -> float:
    """The one rate grammar of scenarios: ``130kbit``, ``1Mbit/s`` (bits) or ``16KB/s``, ``1KiB/s``
    (bytes) -> bytes per second. ``kbps``/``Mbps``/``kb/s`` are refused: tc reads ``kbps`` as
    kilobytes per second, most people as kilobits."""
    m = _RATE_RE.match(value)
    if m:
        num, unit = finite_number(float(m["num"]), "a rate"), m["unit"]
        bits = unit.removesuffix("/s").lower()
        if bits in _BIT_UNITS:
            return num * _BIT_UNITS[bits] / 8.0
        if unit in _BYTE_RATE_UNITS:
            return num * _BYTE_RATE_UNITS[unit]
        if unit.lower() in ("bps", "kbps", "mbps", "gbps", "kb/s", "mb/s", "gb/s"):
            raise ValueError(
                f"{value!r} is ambiguous (tc reads kbps as kilobytes/s, most people as "
                "kilobits/s); write e.g. '130kbit' for bits or '16KB/s' for bytes per second"
            )
    raise ValueError(f"{value!r} is not a rate; write e.g. '130kbit', '1Mbit' or '16KB/s'")


def parse_rate(value: Any) -> Any:
    """A rate in **bits** per second: a plain number is bit/s; text follows the rate grammar."""
    if isinstance(value, bool):
        raise ValueError("a rate is bits per second, e.g. 64000 or '64kbit'")
    if isinstance(value, (int, float)):
        return finite_number(value, "a rate")
    if isinstance(value, str):
        return rate_text_bytes_per_s(value) * 8.0
    raise ValueError(f"{value!r} is not a rate; write e.g. '64kbit' or '2Mbit'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=MAX_DURATION_S)]
Timeout = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=MAX_DURATION_S)]
"""A time limit: zero would cancel the work before it starts, so it must be positive."""
Rate = Annotated[float, BeforeValidator(parse_rate), Field(gt=0, le=MAX_RATE_BIT_S)]
"""Bits per second."""


class _Frozen(BaseModel):
    # allow_inf_nan=False: every float field of every scenario model is finite (see above).
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)
