"""``testbed report merge OUT_DIR SHARD...``: one report from the shards of a CI matrix.

Each shard (a CI job that ran ``testbed run PATHS --shard K/N``) leaves a directory laid out as
the merged report is (docs/ci.md)::

    SHARD/results.json    testbed run ... --json SHARD/results.json      (required)
    SHARD/junit.xml       testbed run ... --junit SHARD/junit.xml        (optional: rebuilt from JSON)
    SHARD/html/           testbed run ... --report SHARD/html            (optional: its pcap/ is copied)

A SHARD may also be a results JSON file (its directory is searched for ``html/pcap/``).  Every
report is a pure function of the result dicts (docs/reports.md), so the merge concatenates the
shards' ``scenarios`` (in file order, as one run lists them), recomputes ``passed`` and writes
all three from that one list: the JUnit file and HTML pages are those a single run of every
scenario would have written, and the output directory is itself a valid SHARD (merges nest).

Refused, as a usage error naming the shards: a scenario name in two shards (the same shard
merged twice, or two files sharing a name), schema versions that differ or are newer than this
testbed reads, shards of different splits (``1/2`` with ``2/3``), the same ``K/N`` twice.
Merged but marked failed (``passed: false``, ``incomplete`` saying what is missing, exit 1): a
shard of the split absent, or a shard that stopped before running all it was given.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from testbed.errors import UsageError
from testbed.files import InputFileError, read_text_file
from testbed.records.json import JsonObject
from testbed.records.result import SCHEMA_VERSION

__all__ = [
    "HTML_DIR",
    "JSON_FILE",
    "JUNIT_FILE",
    "MAX_RESULT_BYTES",
    "MergeError",
    "MergedReport",
    "ShardInput",
    "load_shard",
    "merge_results",
    "write_merged",
]

JSON_FILE = "results.json"
JUNIT_FILE = "junit.xml"
HTML_DIR = "html"

MAX_RESULT_BYTES = 256 * 1024 * 1024
"""A results file read back (by ``report merge`` and ``run --durations-from``): 256 MiB. A scenario's
result is bounded (at most 1000 flows and 10,000 censor events, docs/reports.md): a few MB each."""


class MergeError(UsageError):
    """Shards that cannot be merged into one honest report; the message names the shards and the fix."""


@dataclass(frozen=True, slots=True)
class ShardSplit:
    """The ``shard`` field ``run --shard K/N`` writes: which share this is and what it was given."""

    index: int
    total: int
    scenarios: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ShardInput:
    """One shard's results as read from disk."""

    source: Path  # what the user named (directory or file)
    directory: Path  # where html/pcap/ is looked for
    schema_version: int
    testbed_version: str
    scenarios: tuple[JsonObject, ...]
    split: ShardSplit | None


@dataclass(frozen=True, slots=True)
class MergedReport:
    document: JsonObject  # the merged results.json
    scenarios: tuple[JsonObject, ...]
    missing_shards: tuple[int, ...]  # 1-based shard numbers of the split that were not given
    missing_scenarios: tuple[str, ...]  # given to a shard that stopped before running them
    split_total: int | None  # N of the shards' K/N, if they were run with --shard

    @property
    def complete(self) -> bool:
        return not self.missing_shards and not self.missing_scenarios


def load_shard(source: Path) -> ShardInput:
    """Read a shard directory (its ``results.json``) or a results file."""
    path = source / JSON_FILE if source.is_dir() else source
    if source.is_dir() and not path.exists():
        raise MergeError(f"{source}: no {JSON_FILE}; run each shard with `--json {source}/{JSON_FILE}` (docs/ci.md)")
    try:
        doc = json.loads(read_text_file(path, limit=MAX_RESULT_BYTES))
    except InputFileError as exc:
        raise MergeError(f"{path}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise MergeError(f"{path}: not JSON ({exc}); give a `testbed run --json` file") from None
    what = f"{path}: not a `testbed run --json` result"
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list):
        raise MergeError(f"{what} (no 'scenarios' list)")
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MergeError(f"{what} (no integer 'schema_version')")
    scenarios: list[JsonObject] = []
    for i, s in enumerate(doc["scenarios"]):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("passed"), bool):
            raise MergeError(f"{what}: scenarios[{i}] has no 'name' and 'passed'")
        inner = s.get("schema_version", version)
        if inner != version:
            raise MergeError(
                f"{path}: scenario {s['name']!r} has schema_version {inner!r}, the file {version}; "
                "merge only files that `testbed run --json` wrote"
            )
        scenarios.append(s)
    return ShardInput(
        source=source,
        directory=path.parent,
        schema_version=version,
        testbed_version=str(doc.get("testbed_version", "")),
        scenarios=tuple(scenarios),
        split=_split(doc.get("shard"), path),
    )


def _split(value: Any, path: Path) -> ShardSplit | None:
    if value is None:
        return None
    ok = isinstance(value, Mapping)
    index, total, names = (value.get("index"), value.get("total"), value.get("scenarios")) if ok else (0, 0, None)
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (index, total))
    if not ints or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MergeError(f"{path}: 'shard' must be {{index, total, scenarios}} as `run --shard` writes it")
    assert isinstance(index, int) and isinstance(total, int) and isinstance(names, list)
    if not 1 <= index <= total:
        raise MergeError(f"{path}: 'shard' {index}/{total} is not a shard (K must be between 1 and N)")
    return ShardSplit(index=index, total=total, scenarios=tuple(names))


def merge_results(shards: Sequence[ShardInput]) -> MergedReport:
    """The merged document, or MergeError if these shards do not make one report."""
    if not shards:
        raise MergeError("no shards to merge")
    versions = {s.schema_version for s in shards}
    if len(versions) > 1:
        listing = ", ".join(f"{s.source} has {s.schema_version}" for s in shards)
        raise MergeError(f"schema versions differ ({listing}); run every shard with the same testbed")
    version = versions.pop()
    if version > SCHEMA_VERSION:
        raise MergeError(
            f"{shards[0].source}: schema_version {version} is newer than this testbed reads ({SCHEMA_VERSION}); "
            "merge with the testbed that ran the shards"
        )
    owner: dict[str, Path] = {}
    for shard in shards:
        for s in shard.scenarios:
            name = s["name"]
            if name in owner:
                first = owner[name]
                where = f"{first} and {shard.source}" if first != shard.source else f"{shard.source} (twice)"
                raise MergeError(
                    f"scenario {name!r} is in {where}: merge each shard once, and give scenarios unique names"
                )
            owner[name] = shard.source
    missing_shards, missing_scenarios = _completeness(shards)
    split_total = next((s.split.total for s in shards if s.split is not None), None)
    scenarios = sorted((s for shard in shards for s in shard.scenarios), key=_file_order)
    complete = not missing_shards and not missing_scenarios
    doc: JsonObject = {
        "testbed_version": ", ".join(sorted({s.testbed_version for s in shards if s.testbed_version})),
        "schema_version": version,
        "passed": complete and all(s["passed"] for s in scenarios),
    }
    if not complete:
        doc["incomplete"] = {"missing_shards": list(missing_shards), "missing_scenarios": list(missing_scenarios)}
    doc["scenarios"] = scenarios
    return MergedReport(doc, tuple(scenarios), missing_shards, missing_scenarios, split_total)


def _file_order(s: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    # As `testbed run DIR` lists them (sorted Paths), so a merge reads like one run.
    return PurePosixPath(str(s.get("file", ""))).parts, str(s["name"])


def _completeness(shards: Sequence[ShardInput]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    splits = [(s.source, s.split) for s in shards if s.split is not None]
    if not splits:
        return (), ()
    totals = {split.total for _, split in splits}
    if len(totals) > 1:
        listing = ", ".join(f"{src} is {split.index}/{split.total}" for src, split in splits)
        raise MergeError(f"shards of different splits ({listing}); merge the shards of one matrix")
    seen: dict[int, Path] = {}
    missing_scenarios: list[str] = []
    ran = {s["name"] for shard in shards for s in shard.scenarios}
    for src, split in splits:
        if split.index in seen:
            raise MergeError(f"{seen[split.index]} and {src} are both shard {split.index}/{split.total}")
        seen[split.index] = src
        missing_scenarios += [n for n in split.scenarios if n not in ran]
    total = totals.pop()
    return tuple(k for k in range(1, total + 1) if k not in seen), tuple(sorted(missing_scenarios))


def _pcaps(shards: Sequence[ShardInput]) -> dict[str, Path]:
    """Scenario name -> its capture, found in the shard's ``html/pcap/`` (the path recorded in the
    result is the shard machine's, where ``--report`` put it)."""
    out: dict[str, Path] = {}
    for shard in shards:
        for s in shard.scenarios:
            censor = s.get("censor")
            cap = censor.get("capture") if isinstance(censor, Mapping) else None
            recorded = cap.get("file") if isinstance(cap, Mapping) else None
            if not isinstance(recorded, str) or not recorded:
                continue
            for candidate in (shard.directory / HTML_DIR / "pcap" / PurePosixPath(recorded).name, Path(recorded)):
                if candidate.is_file():
                    out[s["name"]] = candidate
                    break
    return out


def write_merged(out_dir: Path, sources: Sequence[Path]) -> MergedReport:
    """Merge ``sources`` into ``out_dir`` (results.json, junit.xml, html/); returns what was merged."""
    from testbed.report.html import write_html_report
    from testbed.report.json_report import write_document
    from testbed.report.junit import write_junit

    resolved_out = out_dir.resolve()
    for src in sources:
        if src.resolve() == resolved_out or src.resolve() == resolved_out / JSON_FILE:
            raise MergeError(f"{src}: OUT_DIR is one of the shards; merge into a new directory")
    shards = [load_shard(src) for src in sources]
    merged = merge_results(shards)
    out_dir.mkdir(parents=True, exist_ok=True)
    dicts = list(merged.scenarios)
    write_document(merged.document, out_dir / JSON_FILE)
    write_junit(dicts, out_dir / JUNIT_FILE)
    write_html_report(dicts, out_dir / HTML_DIR, pcaps=_copy_pcaps(_pcaps(shards), out_dir / HTML_DIR / "pcap"))
    return merged


def _copy_pcaps(pcaps: Mapping[str, Path], dest: Path) -> dict[str, Path]:
    """Copy the captures under their own names, where ``run --report`` puts them, so the merged
    directory is laid out as a shard's (and merges again: the results still name these files)."""
    out: dict[str, Path] = {}
    for name, src in pcaps.items():
        target = dest / src.name
        if src.resolve() != target.resolve():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        out[name] = target
    return out
