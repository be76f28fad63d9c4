"""Every shipped censor profile has a fidelity scenario (scenarios/profiles/NAME.yaml) and a row in
docs/profiles.md's fidelity table (issue 9): the scenario loads, names the profile, asserts one of
its rules' counters (the mechanism, not only the outcome) and has a workload the profile does not
target (a control), and states published against measured numbers in its header."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.scenario.loader import load_scenario
from testbed.scenario.profiles import shipped_profile_names

ROOT = Path(__file__).resolve().parents[2]


def _fidelity_rows() -> dict[str, str]:
    doc = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    table = doc.split("## Fidelity: published against measured", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| profile")]
    return {line.split("|")[1].strip(): line for line in rows}


@pytest.mark.parametrize("name", shipped_profile_names())
def test_every_shipped_profile_has_a_fidelity_scenario(name: str) -> None:
    path = ROOT / "scenarios" / "profiles" / f"{name}.yaml"
    assert path.is_file(), f"no fidelity scenario for {name}: write {path.relative_to(ROOT)}"
    loaded = load_scenario(path)
    assert loaded.own_censor is not None and name in loaded.own_censor.profiles
    checked = {e.censor.rule for e in loaded.scenario.expect if e.censor is not None and e.censor.rule}
    assert any(rule.startswith(f"{name}/") for rule in checked), "assert the profile's rule counters"
    # A control: more than one workload (a call or a probe the profile must leave alone).
    assert len(loaded.scenario.calls) + len(loaded.scenario.probes) >= 2
    header = path.read_text(encoding="utf-8").split("\nname:", 1)[0]
    assert "Published" in header and "Measured here" in header and "MEASURED" not in header
    row = _fidelity_rows().get(name)
    assert row is not None, f"docs/profiles.md's fidelity table has no row for {name}"
    assert loaded.scenario.name == f"profile-{name}" and f"`profile-{name}`" in row
