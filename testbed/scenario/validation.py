"""pydantic validation errors -> one ``ScenarioError`` at the offending file:line, with a hint.

Shared by the scenario loader and the censor-profile loader (``profiles.py``): both validate a
YAML file read by ``yamlsrc`` against a pydantic model and report the first problem at its line.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from testbed.errors import ScenarioError
from testbed.scenario.yamlsrc import SourceMap, format_path

__all__ = ["translate_validation_error"]


def translate_validation_error(exc: ValidationError, smap: SourceMap, root: type[BaseModel]) -> ScenarioError:
    """The first pydantic error as a ScenarioError at the right line, with a hint; ``root`` is the
    model the file was validated against (``Scenario``, or a censor profile's schema)."""
    errors = exc.errors(include_url=False)
    # A misspelt key also makes the real key "missing": report the misspelling, it explains both.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _clean_loc(err["loc"])
    key = format_path(loc) or None
    kind = err["type"]
    msg = err["msg"]
    hint: str | None = None
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _allowed_keys(loc[:-1], root)
        close = difflib.get_close_matches(name, allowed, n=1)
        msg = f"unknown key {name!r}"
        hint = (f"did you mean {close[0]!r}? " if close else "") + f"allowed here: {', '.join(allowed)}"
        key = format_path(loc[:-1]) or None
    elif kind == "missing":
        msg = f"required key {str(loc[-1])!r} is missing"
        key = format_path(loc[:-1]) or None
        loc = loc[:-1]
    elif kind == "enum":
        hint = f"expected one of: {err.get('ctx', {}).get('expected', '')}"
    elif kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    elif kind == "too_short":
        msg = "must not be empty"
    elif kind == "string_pattern_mismatch":
        if "names" in loc:
            msg = "not a valid host name"
        else:
            msg = "invalid name: use letters, digits, '_', '.', '-' (at most 64 characters)"
    got = err.get("input")
    if kind not in ("extra_forbidden", "missing", "too_short") and not isinstance(got, (dict, list)):
        msg = f"{msg} (got {got!r})"
    return ScenarioError(msg, file=smap.file, line=smap.line_of(loc), key=key, hint=hint)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic inserts validator names (e.g. 'function-after[...]') into locations; drop them.
    return tuple(p for p in loc if isinstance(p, int) or not (isinstance(p, str) and "[" in p))


def _allowed_keys(loc: tuple[str | int, ...], root: type[BaseModel]) -> list[str]:
    model: Any = root
    skip_key = False  # the next part is a key of a dict[str, Model], not a field name
    for part in loc:
        if isinstance(part, int):
            continue
        if skip_key:
            skip_key = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        skip_key = getattr(field.annotation, "__origin__", None) is dict
        model = _inner_model(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(f.alias or n for n, f in model.model_fields.items())
    return []


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``tuple[X, ...]``, ``dict[str, X]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
