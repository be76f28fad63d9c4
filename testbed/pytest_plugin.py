"""pytest plugin: scenario files as test items, so CI can run ``pytest scenarios/``.

A YAML file is collected when it lies under a directory named ``scenarios`` (subdirectories
included: ``scenarios/tools/``) or is named on the command line.  Each scenario is one item, marked ``netns`` (it needs root); a failed expectation
fails the item with the expected-vs-measured lines, a run error with its message.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from testbed.scenario.loader import SCENARIO_SUFFIXES


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root and network namespaces (integration)")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix not in SCENARIO_SUFFIXES:
        return None
    explicit = any(Path(a).resolve() == file_path.resolve() for a in parent.config.args)
    if "scenarios" not in file_path.parent.parts and not explicit:
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self) -> Any:
        from testbed.scenario.loader import load_scenario

        loaded = load_scenario(self.path)
        item = ScenarioItem.from_parent(self, name=loaded.scenario.name, loaded=loaded)
        item.add_marker(pytest.mark.netns)
        yield item


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, loaded: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loaded = loaded

    def runtest(self) -> None:
        from testbed.net.privileges import missing_caps
        from testbed.runner import run_scenario

        missing = missing_caps()
        if missing:
            pytest.skip(f"scenario needs root ({', '.join(missing)} missing): run pytest as root")
        result = asyncio.run(run_scenario(self.loaded))
        self.user_properties.append(("duration_s", round(result.duration_s, 3)))
        if not result.passed:
            lines = [f"scenario {result.name!r} failed ({result.file})"]
            if result.error:
                lines.append(result.error)
            lines += [f"  {'ok  ' if e.passed else 'FAIL'} {e.what}: {e.detail}" for e in result.expectations]
            raise ScenarioFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from testbed.errors import TestbedError

        if isinstance(excinfo.value, (ScenarioFailed, TestbedError)):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.name}"
