"""testbed matrix end to end: a probe-only scenario x (none + a profile that blocks it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "testbed.cli"]

SCENARIO = """\
name: matrix-probe
nodes:
  caller: {side: inside}
  server: {side: outside, services: [{https: {names: [example.com, other.test]}}]}
censor:
  rules:
    - {name: own, match: {sni: other.test}, action: drop}   # replaced in every column
probes:
  - name: web
    node: caller
    run: [curl, -sS, --max-time, "3", --cacert, "{cert:server}", --resolve, "example.com:443:{server}",
          "https://example.com/"]
  - name: other
    node: caller
    run: [curl, -sS, --max-time, "3", --cacert, "{cert:server}", --resolve, "other.test:443:{server}",
          "https://other.test/"]
expect_matrix:
  none: ok
  ./drop-example.yaml: {web: blocked, other: ok}
"""

PROFILE = """\
name: drop-example
summary: drops TLS to example.com (a test profile)
rules:
  - {name: sni-drop, match: {sni: example.com}, action: drop}
"""


def test_matrix_none_and_profile(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "drop-example.yaml").write_text(PROFILE)
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [*CLI, "matrix", "s.yaml", "--censors", "./drop-example.yaml", "--json", str(out), "--report", "rep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())["matrix"]
    assert doc["censors"] == ["none", "drop-example"]
    cells = {r["workload"]: r["cells"] for r in doc["rows"]}
    assert {r["kind"] for r in doc["rows"]} == {"probe"}
    # `own` (which drops other.test) is not in any column: other works under both.
    assert cells["other"]["none"]["outcome"] == "ok" and cells["other"]["drop-example"]["outcome"] == "ok"
    assert cells["web"]["none"]["outcome"] == "ok"
    blocked = cells["web"]["drop-example"]
    assert blocked["outcome"] == "blocked" and blocked["rule"] == "drop-example/sni-drop"
    assert blocked["blocked_after_s"] is not None and blocked["blocked_after_s"] > 0
    assert doc["passed"] and all(c["passed"] for c in doc["checks"]) and len(doc["checks"]) == 4
    page = tmp_path / "rep" / blocked["run_page"]
    assert page.is_file() and "sni-drop" in page.read_text()
    assert (tmp_path / "rep" / "index.html").read_text().count('href="matrix-probe/') == 4
    assert "blocked after" in proc.stdout
