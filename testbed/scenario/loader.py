"""Load scenario files: YAML -> validated, frozen ``Scenario``, with file:line errors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from testbed.errors import ScenarioError
from testbed.files import MAX_SCENARIO_BYTES, InputFileError, read_text_file
from testbed.scenario.model import CensorSpec, Scenario, reference_problems
from testbed.scenario.profiles import resolve_scenario_profiles
from testbed.scenario.validation import translate_validation_error
from testbed.scenario.yamlsrc import format_path, load_yaml

SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    path: Path
    scenario: Scenario
    """With its censor profiles merged into ``scenario.censor`` (rules, lists, settings)."""
    own_censor: CensorSpec | None = None
    """The ``censor:`` section as written, before its profiles were merged (None: it names none);
    what a caller that swaps profiles (a matrix of censors) starts from."""


def load_scenario(path: str | Path, *, idle_ok: bool = False) -> LoadedScenario:
    """``idle_ok``: accept a scenario with no call or probe (``testbed up``)."""
    path = Path(path)
    file = str(path)
    try:
        text = read_text_file(path, limit=MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        hint = "check the path; `testbed run DIR` runs every *.yaml in DIR" if str(exc) == "no such file" else None
        raise ScenarioError(str(exc), file=file, hint=hint) from None
    scenario, own = _parse(text, file, idle_ok=idle_ok, base_dir=path.parent)
    return LoadedScenario(path, scenario, own)


def parse_scenario(
    text: str, file: str = "<scenario>", *, idle_ok: bool = False, base_dir: Path | None = None
) -> Scenario:
    """``base_dir``: where relative profile paths start (default: the directory of ``file``)."""
    return _parse(text, file, idle_ok=idle_ok, base_dir=base_dir)[0]


def _parse(text: str, file: str, *, idle_ok: bool, base_dir: Path | None) -> tuple[Scenario, CensorSpec | None]:
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
        raise translate_validation_error(exc, smap, Scenario) from None
    own: CensorSpec | None = None
    if scenario.censor.profiles:
        own = scenario.censor
        base = base_dir if base_dir is not None else Path(file).parent
        scenario = scenario.model_copy(update={"censor": resolve_scenario_profiles(own, smap, base)})
    problems = reference_problems(scenario)
    if problems:
        path, message, choices = problems[0]
        hint = f"choose one of: {', '.join(choices)}" if choices else None
        raise ScenarioError(message, file=file, line=smap.line_of(path), key=format_path(path), hint=hint)
    return scenario, own


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
