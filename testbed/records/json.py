"""The one spelling of "a JSON value at an edge".

Inside testbed, data is typed records (this package); it becomes JSON only where it leaves a
process or is written to a file, and comes back through a record's ``from_json``.  Where a value
really is untyped JSON at such an edge, it is spelled with these aliases, never with a bare
``dict[str, Any]``, so the edges can be found with one grep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

JsonObject = dict[str, Any]
"""A decoded (or about to be encoded) JSON object."""

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]
"""Any decoded JSON value (what ``json.loads`` returns)."""


class RecordError(ValueError):
    """A JSON value that is not the record it should be: names the record and the key."""


def number(obj: Mapping[str, Any], key: str, what: str) -> float:
    """``obj[key]`` as a finite float (bool is not a number here)."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{what}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def integer(obj: Mapping[str, Any], key: str, what: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what}: {key!r} must be an integer, got {value!r}")
    return value


def string(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{what}: {key!r} must be a string, got {value!r}")
    return value


def optional_string(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{what}: {key!r} must be a string or null, got {value!r}")
    return value


def object_of(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RecordError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    return raw


__all__ = ["JsonObject", "JsonValue", "RecordError", "integer", "number", "object_of", "optional_string", "string"]
