"""Which scenario files a CI matrix job runs: ``testbed run PATHS --shard K/N [--durations-from JSON]``.

Pure: takes the files' keys (their paths as the user named them, ``scenarios/baseline.yaml``)
and, optionally, how long each took last time, and returns each shard's share.  Every job of a
matrix runs the same command on the same checkout, so every job computes the same partition
without talking to the others: no scheduler, no shared state.

- **Stable**: the partition depends only on the set of keys and the weights, never on the order
  the files were found in, the machine, the clock or a random seed.
- **Complete and disjoint**: every key is in exactly one shard.
- **Balanced**: greedy longest-processing-time-first bin packing (Graham's LPT, within 4/3 of the
  best possible makespan): keys sorted by weight, longest first (ties: by key), each going to the
  shard with the least total so far (ties: the lowest shard number).  Without durations every
  key weighs 1, which makes this sorted round-robin: shard sizes differ by at most one.
- A key with no known duration (a scenario added since the durations were measured) weighs the
  mean of the known ones: the best guess that neither starves nor floods a shard.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Shard", "ShardError", "durations_from_result", "partition", "read_durations", "select", "select_items"]

T = TypeVar("T")

_SHARD_RE = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$")


class ShardError(ValueError):
    """A ``--shard`` value or a durations document that cannot be used; the message says why and the fix."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``total`` (1-based, as CI matrices count: ``--shard 1/2`` and ``2/2``)."""

    index: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 1 or not 1 <= self.index <= self.total:
            raise ShardError(f"shard {self.index}/{self.total}: K must be between 1 and N (e.g. 1/2 and 2/2)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = _SHARD_RE.match(text)
        if m is None:
            raise ShardError(f"--shard {text!r}: expected K/N, two whole numbers with 1 <= K <= N (e.g. --shard 1/2)")
        index, total = int(m[1]), int(m[2])
        if total < 1:
            raise ShardError(f"--shard {text!r}: N must be at least 1 (e.g. --shard 1/2)")
        if not 1 <= index <= total:
            raise ShardError(f"--shard {text!r}: K must be between 1 and N (e.g. --shard 1/{max(total, 2)})")
        return cls(index, total)

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def partition(keys: Sequence[str], total: int, weights: Mapping[str, float] | None = None) -> list[list[str]]:
    """All ``total`` shards' keys (shard K is ``result[K - 1]``), each list sorted."""
    if total < 1:
        raise ShardError(f"cannot split into {total} shards")
    unique = sorted(set(keys))
    if len(unique) != len(keys):
        raise ShardError("the same scenario file is named twice")
    known = {k: float(w) for k, w in (weights or {}).items() if k in unique}
    default = math.fsum(known.values()) / len(known) if known else 1.0
    weight = {k: known.get(k, default) for k in unique}
    loads = [0.0] * total
    shards: list[list[str]] = [[] for _ in range(total)]
    for key in sorted(unique, key=lambda k: (-weight[k], k)):
        target = min(range(total), key=lambda i: (loads[i], i))
        shards[target].append(key)
        loads[target] += weight[key]
    return [sorted(s) for s in shards]


def select(keys: Sequence[str], shard: Shard, weights: Mapping[str, float] | None = None) -> list[str]:
    """The keys shard ``shard`` runs, in the order given."""
    mine = set(partition(keys, shard.total, weights)[shard.index - 1])
    return [k for k in keys if k in mine]


def select_items(
    items: Sequence[T],
    shard: Shard,
    *,
    key: Callable[[T], str],
    name: Callable[[T], str],
    durations: Mapping[str, float],
) -> list[T]:
    """The items (scenario files) shard ``shard`` runs, split by ``key`` (the path) and weighed by
    ``durations`` looked up by ``name``: a result written from another directory names its files
    differently, but not its scenarios."""
    keys = [key(item) for item in items]
    weights = {k: durations[name(item)] for k, item in zip(keys, items, strict=True) if name(item) in durations}
    mine = set(select(keys, shard, weights))
    return [item for k, item in zip(keys, items, strict=True) if k in mine]


def read_durations(path: str | Path) -> dict[str, float]:
    """``durations_from_result`` of the JSON file at ``path`` (``--durations-from``)."""
    from testbed.files import InputFileError, read_text_file
    from testbed.report.merge import MAX_RESULT_BYTES

    try:
        return durations_from_result(json.loads(read_text_file(path, limit=MAX_RESULT_BYTES)))
    except InputFileError as exc:
        raise ShardError(f"--durations-from {path}: {exc}") from None
    except ShardError as exc:
        raise ShardError(f"--durations-from {path}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise ShardError(f"--durations-from {path}: not JSON ({exc}); give a `testbed run --json` file") from None


def durations_from_result(doc: Any) -> dict[str, float]:
    """Scenario name -> ``duration_s`` from a ``testbed run --json`` document (or a merged one)."""
    scenarios = doc.get("scenarios") if isinstance(doc, Mapping) else None
    if not isinstance(scenarios, list):
        raise ShardError("not a `testbed run --json` result: it has no 'scenarios' list")
    out: dict[str, float] = {}
    for i, s in enumerate(scenarios):
        name = s.get("name") if isinstance(s, Mapping) else None
        duration = s.get("duration_s") if isinstance(s, Mapping) else None
        if not isinstance(name, str):
            raise ShardError(f"scenarios[{i}] has no 'name'")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            raise ShardError(f"scenarios[{i}] ({name}): 'duration_s' must be a finite number, got {duration!r}")
        if duration < 0:
            raise ShardError(f"scenarios[{i}] ({name}): 'duration_s' is negative ({duration})")
        out[name] = float(duration)
    return out
