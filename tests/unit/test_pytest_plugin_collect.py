"""The pytest plugin collects scenario files under ``scenarios/``, subdirectories included."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SCENARIO = "name: {name}\nprobes:\n  - {{name: p, node: caller, run: ['true']}}\n"


def test_scenarios_in_subdirectories_are_collected(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/top": SCENARIO.format(name="top")})
    pytester.makefile(".yaml", **{"scenarios/tools/nested": SCENARIO.format(name="nested")})
    pytester.makefile(".yaml", **{"elsewhere/other": SCENARIO.format(name="other")})
    result = pytester.runpytest("--collect-only", "-q")
    out = result.stdout.str()
    assert "scenarios/top.yaml::top" in out
    assert "scenarios/tools/nested.yaml::nested" in out
    assert "other" not in out  # not under scenarios/, not named on the command line
