"""The JSON result file (``testbed run --json FILE``). Fields are only ever added, never renamed;
``schema_version`` (``testbed.records.result``) says when that rule had to be broken."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from testbed import __version__
from testbed.records.json import JsonObject
from testbed.records.result import SCHEMA_VERSION
from testbed.runner import ScenarioResult

__all__ = ["SCHEMA_VERSION", "write_document", "write_json"]

# Up to this size the file is indented for people to read. Above it the document is mostly
# censor events and flows, read by programs, and the indenting encoder (pure Python, unlike the
# compact one) would be most of the cost of writing it (issue 11).
PRETTY_MAX_BYTES = 1 << 20


def write_json(results: Sequence[ScenarioResult], path: Path, *, extra: JsonObject | None = None) -> None:
    """``extra``: more top-level fields (``shard`` for ``run --shard``), written before ``scenarios``."""
    doc: JsonObject = {
        "testbed_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "passed": all(r.passed for r in results),
        **(extra or {}),
        "scenarios": [r.to_json() for r in results],
    }
    write_document(doc, path)


def write_document(doc: JsonObject, path: Path) -> None:
    """Write a result document (atomically: a temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) <= PRETTY_MAX_BYTES:
        text = json.dumps(doc, indent=2)
    tmp.write_text(text + "\n")
    tmp.replace(path)
