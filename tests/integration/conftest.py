"""Namespace integration tests: need root; every test checks the host is left as it was found."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces (run sudo scripts/test.sh)")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


def host_state() -> dict[str, str]:
    """The host's own network state that a run must never change."""

    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    links = re.sub(r"^\d+: ", "", run("ip", "-o", "link", "show"), flags=re.M)
    links = "\n".join(sorted(re.sub(r"\\.*", "", ln) for ln in links.splitlines()))
    iptables = re.sub(r"\[\d+:\d+\]", "", run("iptables-save"))
    iptables = "\n".join(ln for ln in iptables.splitlines() if not ln.startswith("#"))
    # tbt* namespaces belong to the calls tests' own fixture, which checks its own cleanup; they
    # are ignored here so that test modules can run concurrently (pytest-xdist) without noise.
    netns = "\n".join(sorted(ln for ln in run("ip", "netns", "list").splitlines() if not ln.startswith("tbt")))
    return {
        "netns": netns,
        "links": links,
        "addrs": run("ip", "-o", "addr", "show"),
        "routes4": run("ip", "route", "show", "table", "all"),
        "routes6": run("ip", "-6", "route", "show", "table", "all"),
        "iptables": iptables,
        "run_dirs": "\n".join(sorted(os.listdir("/run/testbed"))) if os.path.isdir("/run/testbed") else "",
    }


@pytest.fixture
def unchanged_host() -> Iterator[dict[str, str]]:
    before = host_state()
    yield before
    after = host_state()
    for key in before:
        assert after[key] == before[key], f"host {key} changed by the test"
