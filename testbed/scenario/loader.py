"""Load scenario files: YAML -> validated, frozen ``Scenario``, with file:line errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from testbed.errors import ScenarioError
from testbed.files import MAX_SCENARIO_BYTES, InputFileError, read_text_file
from testbed.scenario.model import Scenario, reference_problems
from testbed.scenario.yamlsrc import SourceMap, format_path, load_yaml

SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    path: Path
    scenario: Scenario


def load_scenario(path: str | Path, *, idle_ok: bool = False) -> LoadedScenario:
    """``idle_ok``: accept a scenario with no call or probe (``testbed up``)."""
    path = Path(path)
    file = str(path)
    try:
        text = read_text_file(path, limit=MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        hint = "check the path; `testbed run DIR` runs every *.yaml in DIR" if str(exc) == "no such file" else None
        raise ScenarioError(str(exc), file=file, hint=hint) from None
    return LoadedScenario(path, parse_scenario(text, file, idle_ok=idle_ok))


def parse_scenario(text: str, file: str = "<scenario>", *, idle_ok: bool = False) -> Scenario:
    data, smap = load_yaml(text, file)
    if not isinstance(data, dict):
        raise ScenarioError(
            f"a scenario is a mapping of keys (name, calls, ...), not a {type(data).__name__}",
            file=file,
            line=1,
        )
    try:
        scenario = Scenario.model_validate(data, context={"defer_references": True, "idle_ok": idle_ok})
    except ValidationError as exc:
        raise _translate(exc, data, smap) from None
    problems = reference_problems(scenario)
    if problems:
        path, message, choices = problems[0]
        hint = f"choose one of: {', '.join(choices)}" if choices else None
        raise ScenarioError(message, file=file, line=smap.line_of(path), key=format_path(path), hint=hint)
    return scenario


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their scenario files (sorted); keep files as given."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            # Not only regular files: a FIFO or dangling link named *.yaml is reported, not skipped.
            found = sorted(f for f in p.rglob("*") if f.suffix in SCENARIO_SUFFIXES and not f.is_dir())
            if not found:
                raise ScenarioError("no *.yaml scenario files in this directory", file=str(p))
            out.extend(found)
        else:
            out.append(p)
    return out


def _translate(exc: ValidationError, data: Any, smap: SourceMap) -> ScenarioError:
    """The first pydantic error as a ScenarioError at the right line, with a hint."""
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
        allowed = _allowed_keys(loc[:-1])
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


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: Any = Scenario
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
