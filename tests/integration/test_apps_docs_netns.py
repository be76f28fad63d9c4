"""The final scenario of the docs/apps.md tutorial runs and passes, as the tutorial says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

DOC = Path(__file__).resolve().parents[2] / "docs" / "apps.md"


def test_the_tutorials_final_scenario_passes(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    final = [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL) if b.startswith("name:")][-1]
    scenario = tmp_path / "socat-censored.yaml"
    scenario.write_text(final)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "testbed.cli",
            "run",
            str(scenario),
            "--json",
            str(out),
            "--report",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sc,) = json.loads(out.read_text())["scenarios"]
    (probe,) = sc["probes"]
    assert probe["attempts"][0]["exit"] == 0 and probe["first_failure_s"] is not None  # worked, then blocked
    assert {a["name"] for a in sc["apps"]} == {"client", "echo-server"}
    assert (tmp_path / "r" / "socat-censored.html").read_text().count("logs/") >= 2
