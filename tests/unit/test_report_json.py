"""``testbed run --json FILE``: indented while small, compact (C encoder) once large (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.report.json_report import PRETTY_MAX_BYTES, write_json
from testbed.runner import ScenarioResult


def test_small_result_is_indented(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json([ScenarioResult("s", "s.yaml", "rid", 1, passed=True)], path)
    text = path.read_text()
    assert text.startswith('{\n  "testbed_version"')
    assert json.loads(text)["scenarios"][0]["name"] == "s"


def test_large_result_is_compact(tmp_path: Path) -> None:
    events = [{"t_s": i / 10, "event": "drop", "rule": "r", "flow": f"198.18.1.2:{i}"} for i in range(20_000)]
    result = ScenarioResult("s", "s.yaml", "rid", 1, censor={"events": events})
    path = tmp_path / "r.json"
    write_json([result], path)
    text = path.read_text()
    assert len(text) > PRETTY_MAX_BYTES and text.count("\n") == 1  # one line
    assert json.loads(text)["scenarios"][0]["censor"]["events"] == events
