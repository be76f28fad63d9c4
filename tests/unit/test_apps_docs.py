"""Every scenario in docs/apps.md loads: the tutorial cannot drift from the schema."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from testbed.scenario.loader import parse_scenario

DOC = Path(__file__).resolve().parents[2] / "docs" / "apps.md"
SCENARIOS = [
    b
    for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    if b.startswith("name:")
]


def test_the_tutorial_has_its_steps() -> None:
    assert len(SCENARIOS) == 4
    assert "name: socat-censored" in SCENARIOS[-1]  # the final one, run by tests/integration/test_apps_docs_netns.py


@pytest.mark.skipif(shutil.which("socat") is None, reason="the tutorial's tool: apt-get install socat")
@pytest.mark.parametrize("block", SCENARIOS, ids=[b.split("\n", 1)[0].removeprefix("name: ") for b in SCENARIOS])
def test_doc_scenario_loads(block: str) -> None:
    sc = parse_scenario(block, "docs/apps.md")
    assert any(spec.apps for spec in sc.nodes.values())
