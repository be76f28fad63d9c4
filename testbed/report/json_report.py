"""The JSON result file (``testbed run --json FILE``). Fields are only ever added, never renamed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from testbed import __version__
from testbed.runner import ScenarioResult

SCHEMA_VERSION = 1


def write_json(results: Sequence[ScenarioResult], path: Path) -> None:
    doc = {
        "testbed_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "passed": all(r.passed for r in results),
        "scenarios": [r.to_json() for r in results],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
