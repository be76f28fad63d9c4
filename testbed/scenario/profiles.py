"""Censor profiles: a catalogued censor as a reusable, versioned file.

A profile (``testbed/data/censors/<name>.yaml``, or the user's own file) holds what a scenario's
``censor:`` section holds -- ``lists``, ``rules``, ``policy`` settings, and the classifier's
``inspect_packets`` and ``reassemble_tls`` under ``classifier:`` -- plus metadata: ``name``,
``summary``, ``country``, ``observed``, ``sources``, ``confidence`` and ``notes`` (what is
emulated exactly, what is approximated, what is left out). A scenario names profiles in
``censor.profiles`` (a shipped name, or a path relative to the scenario's directory) and
:func:`apply_profiles` merges them into its censor section:

- **rules**: the scenario's own first, then each profile's in the order given, each renamed
  ``<profile>/<rule>``. A rule name written in YAML cannot hold ``/``, so a profile's rule never
  clashes with the scenario's, and results say which profile decided.
- **lists**: one namespace. A profile's lists serve every rule; the scenario's ``lists:`` entry of
  the same name *replaces* the profile's (``telegram: [relay]``: the sandbox's relay is Telegram),
  as a scenario list replaces a shipped one. Two profiles that declare one name with different
  contents are an error, unless the scenario declares that name (it then replaces both).
  A profile cannot name a scenario's nodes: it declares a list (possibly empty) for them.
- **settings**: what the scenario sets wins; otherwise the largest value any profile sets (each is
  a budget: inspect more packets, keep more events or held packets), and ``reassemble_tls: false``
  when any profile asks for it (the classifier is shared: the other profiles' SNI rules then miss
  a split ClientHello too).

The policy compiler never learns where a rule came from, except through its name. A profile file is
validated like a scenario: the same bounded reader (``testbed.files``), the same YAML loader with
its limits (``yamlsrc``), the same rule schema (``policy_schema``), errors at the profile's own
file:line.
"""

from __future__ import annotations

import datetime
import difflib
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from testbed.errors import ScenarioError
from testbed.files import MAX_SCENARIO_BYTES, InputFileError, read_text_file
from testbed.scenario.common import _Frozen
from testbed.scenario.model import CensorSpec
from testbed.scenario.policy_schema import Lists, ListSpec, PolicySettings, Rules, RuleSpec, policy_reference_problems
from testbed.scenario.validation import translate_validation_error
from testbed.scenario.yamlsrc import SourceMap, format_path, load_yaml

__all__ = [
    "MAX_PROFILES",
    "PROFILE_SUFFIXES",
    "CensorProfile",
    "ClassifierSettings",
    "Confidence",
    "ProfileNotes",
    "ProfileSpec",
    "apply_profiles",
    "load_profile_file",
    "load_shipped_profile",
    "describe_profile",
    "profile_table",
    "resolve_profile",
    "shipped_profile_names",
]

PROFILE_NAME_RE = r"^[a-z0-9][a-z0-9.-]{0,39}$"
PROFILE_SUFFIXES = (".yaml", ".yml")
MAX_PROFILES = 32
"""Profiles one scenario may name (the shipped catalogue has 15; more is a mistake, not a censor)."""
_PACKAGE = "testbed.data"
_DIR = "censors"
_CATALOGUE_RE = re.compile(r"^[A-Z]\.\d{1,2}$")
_DATE = r"\d{4}(?:-\d{2}){0,2}"
_OBSERVED_RE = re.compile(rf"^(?P<start>{_DATE})(?:\.\.(?P<end>{_DATE})?)?$")


class Confidence(str, Enum):
    """The catalogue's evidence grades (shared/reference/censor-behaviors.md)."""

    MEASURED = "M"  # a paper with a stated method
    COMMUNITY = "C"  # community measurement (pcaps, tests)
    ANECDOTE = "A"  # anecdote, news
    SECONDARY = "S"  # a secondary summary, to be checked


class ProfileNotes(_Frozen):
    """The profile's docstring: how close the emulation is to the censor it names."""

    emulated: str = Field(min_length=1)
    """What the rules reproduce exactly (trigger, action, numbers)."""
    approximated: str = Field(min_length=1)
    """What they reproduce only roughly, and how."""
    left_out: str = Field(min_length=1)
    """What the censor does that the profile does not."""


class ClassifierSettings(_Frozen):
    """The two classifier settings of ``censor:`` a censor model can depend on."""

    inspect_packets: int | None = Field(None, ge=1, le=10_000)
    reassemble_tls: bool | None = None


class ProfileSpec(_Frozen):
    """A censor profile file."""

    name: str = Field(pattern=PROFILE_NAME_RE)
    """Lowercase letters, digits, '.', '-'; prefixes its rules' names in results."""
    summary: str = Field(min_length=1, max_length=160)
    """One line, for ``testbed profiles``."""
    country: str = Field("", max_length=80)
    observed: str = ""
    """When the behaviour was seen: ``2021-03..2021-05``, ``2025-08..`` (still seen), ``2021-12``."""
    sources: tuple[str, ...] = ()
    """Catalogue entries (``A.2``) and papers / threads / URLs."""
    confidence: tuple[Confidence, ...] = ()
    """``M``, ``C``, ``A``, ``S`` as in the catalogue; ``M/S``: measured, with parts secondary."""
    notes: ProfileNotes | None = None
    lists: Lists = Field(default_factory=dict)
    rules: Rules
    policy: PolicySettings = Field(default_factory=lambda: PolicySettings.model_validate({}))
    classifier: ClassifierSettings = Field(default_factory=lambda: ClassifierSettings.model_validate({}))

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("the summary is one line; put the rest in `notes`")
        return value.strip()

    @field_validator("observed", mode="before")
    @classmethod
    def _observed(cls, value: Any) -> Any:
        if isinstance(value, (datetime.date, int)) and not isinstance(value, bool):
            value = value.isoformat() if isinstance(value, datetime.date) else str(value)
        if not isinstance(value, str):
            return value
        value = value.strip().replace(" ", "")
        m = _OBSERVED_RE.match(value)
        if value and m is None:
            raise ValueError(
                f"{value!r} is not a date range; write e.g. '2021-03..2021-05', '2025-08..' (ongoing) or '2021-12'"
            )
        if m is not None and m["end"] is not None and m["end"] < m["start"]:
            raise ValueError(f"{value!r} ends before it starts")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, (list, tuple)):
            for item in value:
                if not isinstance(item, str) or not item.strip() or len(item) > 500:
                    raise ValueError("each source is a catalogue entry ('A.2') or a paper, thread or URL (text)")
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split("/")]
        return value

    @field_validator("rules")
    @classmethod
    def _some_rules(cls, value: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
        if not value:
            raise ValueError("a profile has at least one rule")
        return value

    @property
    def catalogue_entries(self) -> tuple[str, ...]:
        return tuple(s for s in self.sources if _CATALOGUE_RE.match(s))

    @property
    def confidence_text(self) -> str:
        return "/".join(c.value for c in self.confidence)


@dataclass(frozen=True, slots=True)
class CensorProfile:
    """A loaded, validated profile: its spec, where it came from, and its rules as written (for
    ``testbed profiles show``)."""

    spec: ProfileSpec
    file: str
    """The path as errors show it (a shipped profile: ``testbed/data/censors/NAME.yaml``)."""
    shipped: bool
    list_lines: tuple[tuple[str, int], ...] = ()
    rules_data: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    def list_line(self, name: str) -> int | None:
        return dict(self.list_lines).get(name)

    def prefixed(self, rule: str) -> str:
        return f"{self.spec.name}/{rule}"


# --- finding and loading -------------------------------------------------------------------------


def shipped_profile_names() -> tuple[str, ...]:
    root = resources.files(_PACKAGE).joinpath(_DIR)
    return tuple(sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml")))


def _shipped_path(name: str) -> Path:
    # Installed as package data in a directory (setuptools' package-data), so a real path exists.
    return Path(str(resources.files(_PACKAGE).joinpath(_DIR, f"{name}.yaml")))


def load_shipped_profile(name: str) -> CensorProfile:
    if name not in shipped_profile_names():
        raise ScenarioError(f"unknown censor profile {name!r}", hint=_did_you_mean(name))
    return load_profile_file(_shipped_path(name), shown_as=f"testbed/data/{_DIR}/{name}.yaml", shipped=True)


def load_profile_file(path: Path, *, shown_as: str | None = None, shipped: bool = False) -> CensorProfile:
    """Read and validate one profile file; every error names the profile's file (and line)."""
    file = shown_as or str(path)
    try:
        text = read_text_file(path, limit=MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        raise ScenarioError(str(exc), file=file) from None
    return parse_profile(text, file, base_dir=path.parent, shipped=shipped)


def parse_profile(text: str, file: str, *, base_dir: Path, shipped: bool = False) -> CensorProfile:
    """Validate a profile's YAML text; list files are made absolute against ``base_dir``."""
    data, smap = load_yaml(text, file)
    if not isinstance(data, dict):
        raise ScenarioError(
            f"a censor profile is a mapping of keys (name, summary, rules, ...), not a {type(data).__name__}",
            file=file,
            line=1,
        )
    try:
        spec = ProfileSpec.model_validate(data)
    except ValidationError as exc:
        raise translate_validation_error(exc, smap, ProfileSpec) from None
    _check_references(spec, smap)
    lists = {name: _absolute_file(ls, base_dir) for name, ls in spec.lists.items()}
    if lists != spec.lists:
        spec = spec.model_copy(update={"lists": lists})
    list_lines = tuple((name, smap.line_of(("lists", name)) or 1) for name in spec.lists)
    raw_rules = data.get("rules")
    return CensorProfile(
        spec=spec,
        file=file,
        shipped=shipped,
        list_lines=list_lines,
        rules_data=tuple(raw_rules) if isinstance(raw_rules, list) else (),
    )


def _absolute_file(ls: ListSpec, base: Path) -> ListSpec:
    """A list file is relative to the profile's directory (the censor reads it relative to the
    scenario's otherwise)."""
    if ls.file is None or Path(ls.file).is_absolute():
        return ls
    return ls.model_copy(update={"file": str((base / ls.file).resolve())})


def _check_references(spec: ProfileSpec, smap: SourceMap) -> None:
    from testbed.core.labels import Label  # the classifier's vocabulary, for label matchers

    problems = policy_reference_problems(
        spec.rules, spec.lists, nodes=(), known_labels={str(label) for label in Label}, prefix=()
    )
    if not problems:
        return
    path, message, choices = problems[0]
    hint = f"choose one of: {', '.join(choices)}" if choices else None
    if message.startswith("unknown node"):
        message = message.replace("unknown node", "a profile cannot name a scenario's node")
        hint = (
            "declare an address list in the profile (it may be empty: `lists: {hosting: []}`) and let "
            "the scenario point it at its nodes (`censor: {lists: {hosting: [server]}}`)"
        )
    raise ScenarioError(message, file=smap.file, line=smap.line_of(path), key=format_path(path) or None, hint=hint)


def is_profile_path(ref: str) -> bool:
    """A ``profiles:`` entry names a file when it has a '/' or a YAML suffix; else a shipped profile."""
    return "/" in ref or ref.endswith(PROFILE_SUFFIXES)


def _did_you_mean(name: str) -> str:
    names = shipped_profile_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{guess}shipped profiles: {', '.join(names)} (`testbed profiles` lists them); "
        "or give the path of your own profile file (./my-profile.yaml)"
    )


def resolve_profile(ref: str, *, base_dir: Path) -> CensorProfile:
    """A ``profiles:`` entry -> the loaded profile. ``ref`` is a shipped name or a path (relative
    to ``base_dir``, the scenario's directory). Errors about the reference itself carry no file
    (the caller adds the scenario's file:line); errors inside a profile file carry its own."""
    if not is_profile_path(ref):
        if ref not in shipped_profile_names():
            raise ScenarioError(f"unknown censor profile {ref!r}", hint=_did_you_mean(ref))
        return load_shipped_profile(ref)
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        # A FIFO, device or directory is refused here, at the scenario's line, unopened.
        text = read_text_file(path, limit=MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        hint = "check the path (relative to the scenario's directory)" if str(exc) == "no such file" else None
        raise ScenarioError(f"profile file {ref}: {exc}", hint=hint) from None
    return parse_profile(text, _shown(path), base_dir=path.parent)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- merging -------------------------------------------------------------------------------------


class ProfileMergeError(ValueError):
    """Profiles that cannot be combined (a list declared differently by two of them); the message
    names both profiles and their files, ``index`` the later profile's place in ``profiles``."""

    def __init__(self, message: str, *, index: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.hint = hint


def merged_lists(own: Mapping[str, ListSpec], profiles: Sequence[CensorProfile]) -> dict[str, ListSpec]:
    out: dict[str, ListSpec] = {}
    declared_by: dict[str, CensorProfile] = {}
    for i, profile in enumerate(profiles):
        for name, ls in profile.spec.lists.items():
            if name in own:
                continue  # the scenario's list replaces every profile's of that name
            first = declared_by.get(name)
            if first is not None and out[name] != ls:
                raise ProfileMergeError(
                    f"profiles {first.name!r} ({first.file}:{first.list_line(name)}) and {profile.name!r} "
                    f"({profile.file}:{profile.list_line(name)}) both declare address list {name!r}, differently",
                    index=i,
                    hint=(
                        f"declare `{name}` in the scenario's `censor.lists` (it replaces both profiles' lists), "
                        "or rename the list in one of your profiles"
                    ),
                )
            out.setdefault(name, ls)
            declared_by.setdefault(name, profile)
    out.update(own)
    return out


def _merged_policy(own: PolicySettings, profiles: Sequence[CensorProfile]) -> PolicySettings:
    update: dict[str, object] = {}
    for key in PolicySettings.model_fields:
        if key in own.model_fields_set:
            continue
        values = [getattr(p.spec.policy, key) for p in profiles if key in p.spec.policy.model_fields_set]
        if values:
            update[key] = max(values)  # every setting is a budget: the largest serves every profile
    return PolicySettings.model_validate({**own.model_dump(), **update}) if update else own


def apply_profiles(censor: CensorSpec, profiles: Sequence[CensorProfile]) -> CensorSpec:
    """``censor`` with ``profiles`` merged in (module docstring). ``censor.profiles`` is kept as
    written. Raises ``ProfileMergeError`` for clashing lists, ``ValueError`` for settings that
    break a ``CensorSpec`` invariant."""
    if not profiles:
        return censor
    rules = list(censor.rules)
    for profile in profiles:
        rules.extend(r.model_copy(update={"name": profile.prefixed(r.name)}) for r in profile.spec.rules)
    own_set = censor.model_fields_set
    inspect = censor.inspect_packets
    if "inspect_packets" not in own_set:
        asked = [p.spec.classifier.inspect_packets for p in profiles if p.spec.classifier.inspect_packets is not None]
        inspect = max(asked, default=inspect)
    reassemble = censor.reassemble_tls
    if "reassemble_tls" not in own_set:
        reassemble = all(p.spec.classifier.reassemble_tls is not False for p in profiles)
    try:
        return CensorSpec.model_validate(
            {
                "inspect_packets": inspect,
                "queue_max_len": censor.queue_max_len,
                "max_flows": censor.max_flows,
                "reassemble_tls": reassemble,
                "profiles": censor.profiles,
                "rules": tuple(rules),  # RuleSpec instances: validated once, renamed here
                "lists": merged_lists(censor.lists, profiles),
                "policy": _merged_policy(censor.policy, profiles),
            }
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ValueError(str(err["msg"]).removeprefix("Value error, ")) from None


def resolve_scenario_profiles(censor: CensorSpec, smap: SourceMap, base_dir: Path) -> CensorSpec:
    """Load every profile ``censor.profiles`` names and merge them in; errors about an entry at
    its line in the scenario, errors inside a profile at the profile's own file:line."""
    loaded: list[CensorProfile] = []
    seen: dict[str, int] = {}
    for i, ref in enumerate(censor.profiles):
        path = ("censor", "profiles", i)
        line = smap.line_of(path)
        try:
            profile = resolve_profile(ref, base_dir=base_dir)
        except ScenarioError as exc:
            if exc.file is not None:
                raise ScenarioError(
                    exc.bare_message,
                    file=exc.file,
                    line=exc.line,
                    key=exc.key,
                    hint=(f"{exc.hint}; " if exc.hint else "") + f"profile named at {smap.file}:{line}",
                ) from None
            key = format_path(path)
            raise ScenarioError(exc.bare_message, file=smap.file, line=line, key=key, hint=exc.hint) from None
        if profile.name in seen:
            raise ScenarioError(
                f"profile {profile.name!r} is named twice (also censor.profiles[{seen[profile.name]}])",
                file=smap.file,
                line=line,
                key=format_path(path),
                hint="its rules would run twice under the same names; keep one (a profile's `name:` must be unique)",
            )
        seen[profile.name] = i
        loaded.append(profile)
    try:
        return apply_profiles(censor, loaded)
    except ProfileMergeError as exc:
        path = ("censor", "profiles", exc.index)
        line = smap.line_of(path)
        raise ScenarioError(str(exc), file=smap.file, line=line, key=format_path(path), hint=exc.hint) from None
    except ValueError as exc:
        line = smap.line_of(("censor", "profiles"))
        raise ScenarioError(str(exc), file=smap.file, line=line, key="censor.profiles") from None


# --- text for `testbed profiles` ----------------------------------------------------------------


def profile_table() -> str:
    """One line per shipped profile: name, country, observed, summary."""
    profiles = [load_shipped_profile(n).spec for n in shipped_profile_names()]
    width = max(len(p.name) for p in profiles)
    cwidth = max(len(p.country) for p in profiles)
    owidth = max(len(p.observed) for p in profiles)
    head = f"{'profile':<{width}}  {'country':<{cwidth}}  {'observed':<{owidth}}  summary"
    lines = [head]
    lines += [f"{p.name:<{width}}  {p.country:<{cwidth}}  {p.observed:<{owidth}}  {p.summary}" for p in profiles]
    lines.append(
        "use `testbed profiles show NAME` for one; `censor: {profiles: [NAME]}` in a scenario (docs/profiles.md)"
    )
    return "\n".join(lines)


def _wrap(label: str, text: str) -> list[str]:
    words = " ".join(text.split())
    lines = textwrap.wrap(words, width=100, initial_indent=f"  {label:<13} ", subsequent_indent=" " * 16)
    return lines or [f"  {label}"]


def describe_profile(profile: CensorProfile) -> str:
    """A profile for people: metadata, notes, lists and rules (names as results show them)."""
    spec = profile.spec
    out = [f"{spec.name}: {spec.summary}", f"  file          {profile.file}"]
    for label, value in (
        ("country", spec.country),
        ("observed", spec.observed),
        ("confidence", spec.confidence_text),
    ):
        if value:
            out.append(f"  {label:<13} {value}")
    for i, source in enumerate(spec.sources):
        out.extend(_wrap("sources" if i == 0 else "", source))
    if spec.notes is not None:
        out.extend(_wrap("emulated", spec.notes.emulated))
        out.extend(_wrap("approximated", spec.notes.approximated))
        out.extend(_wrap("left out", spec.notes.left_out))
    settings = {k: v for k, v in spec.classifier.model_dump().items() if v is not None}
    settings.update({k: getattr(spec.policy, k) for k in sorted(spec.policy.model_fields_set)})
    if settings:
        out.append(f"  settings      {_flow(settings)}")
    for name, ls in spec.lists.items():
        entries = list(ls.entries) + ([f"file {ls.file}"] if ls.file else [])
        out.append(f"  list {name:<8} {', '.join(entries) or '(empty: the scenario points it at nodes)'}")
    out.append("  rules (in order; first match wins):")
    for rule, data in zip(spec.rules, profile.rules_data or [None] * len(spec.rules), strict=True):
        out.append(f"    {profile.prefixed(rule.name)}" + (f"  -- {rule.description}" if rule.description else ""))
        if isinstance(data, dict):
            for key in ("sticky", "match", "action"):
                if key in data:
                    out.append(f"      {key}: {_flow(data[key])}")
    return "\n".join(out)


def _flow(value: Any) -> str:
    text = str(yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False))
    return text.removesuffix("\n").removesuffix("\n...").strip()  # a bare scalar ends its document
