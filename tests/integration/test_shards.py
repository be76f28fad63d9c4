"""A suite spread over machines gives the results of one run (issue 13): ``run --shard K/N`` +
``report merge``, and ``pytest -n 2`` over the scenario files.

Three cheap probe-only scenarios (one fails on purpose, so pass/fail is compared, not only
names) stand in for the suite, which is too long for a shared machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "testbed.cli"]

# name -> the probe's exit code; the probe expects 0, so "shard-c-fails" fails.
SCENARIOS = {"shard-a": 0, "shard-b": 0, "shard-c-fails": 3}


def _suite(root: Path) -> Path:
    d = root / "scenarios"  # the pytest plugin collects *.yaml from directories of this name
    d.mkdir()
    for name, code in SCENARIOS.items():
        (d / f"{name}.yaml").write_text(
            f"name: {name}\nnodes:\n  caller: {{side: inside}}\n  server: {{side: outside}}\n"
            "censor:\n  rules:\n    - {name: watch-dns, match: {dst_port: 53}, action: drop}\n"
            "probes:\n  - name: exit\n    node: caller\n"
            f'    run: ["{{python}}", -c, "import sys; sys.exit({code})"]\n'
            "    expect: {exit: 0}\n"
        )
    return d


def _outcomes(doc: dict[str, object]) -> dict[str, bool]:
    scenarios = doc["scenarios"]
    assert isinstance(scenarios, list)
    return {s["name"]: s["passed"] for s in scenarios}


def _shard_argv(suite: Path, out: Path, k: int) -> list[str]:
    d = out / f"shard-{k}"
    return [
        *CLI,
        "run",
        str(suite),
        "-q",
        "--shard",
        f"{k}/2",
        "--json",
        str(d / "results.json"),
        "--junit",
        str(d / "junit.xml"),
        "--report",
        str(d / "html"),
    ]


def test_two_shards_merged_give_the_results_of_one_run(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    suite = _suite(tmp_path)
    single = tmp_path / "single.json"
    one = subprocess.run(
        [*CLI, "run", str(suite), "-q", "--json", str(single)], capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 1, one.stdout + one.stderr  # shard-c-fails
    expected = _outcomes(json.loads(single.read_text()))
    assert expected == {"shard-a": True, "shard-b": True, "shard-c-fails": False}

    for k in (1, 2):
        (tmp_path / f"shard-{k}").mkdir()
    # The two jobs at once, as a CI matrix would (on one machine here): their runs must not collide.
    procs = [
        subprocess.Popen(_shard_argv(suite, tmp_path, k), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (1, 2)
    ]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    shard_docs = [json.loads((tmp_path / f"shard-{k}" / "results.json").read_text()) for k in (1, 2)]
    shares = [set(_outcomes(d)) for d in shard_docs]
    assert shares[0] and shares[1] and not shares[0] & shares[1], shares  # both got work, none twice
    for p, (out, err), share in zip(procs, outs, shares, strict=True):
        assert p.returncode == (1 if "shard-c-fails" in share else 0), out + err

    merged = tmp_path / "merged"
    proc = subprocess.run(
        [*CLI, "report", "merge", str(merged), str(tmp_path / "shard-1"), str(tmp_path / "shard-2")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the merged suite has a failure, as the single run
    assert "2 passed, 1 failed" in proc.stdout
    doc = json.loads((merged / "results.json").read_text())
    assert _outcomes(doc) == expected
    assert doc["passed"] is False and "incomplete" not in doc
    assert [s["name"] for s in doc["scenarios"]] == sorted(SCENARIOS)  # file order, as the single run

    junit = ET.parse(merged / "junit.xml").getroot()
    assert sorted(s.get("name") for s in junit.iter("testsuite")) == sorted(SCENARIOS)
    assert (junit.get("tests"), junit.get("failures")) == ("3", "1")

    index = (merged / "html" / "index.html").read_text()
    pages = re.findall(r'href="([^"]+\.html)"', index)
    assert len(pages) == 3
    for page in pages:
        text = (merged / "html" / page).read_text()
        (pcap,) = set(re.findall(r'href="(pcap/[^"]+)"', text))
        assert (merged / "html" / pcap).stat().st_size > 0  # the shard's capture, carried over


def test_pytest_xdist_runs_the_scenarios_on_two_workers(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    pytest.importorskip("xdist")
    suite = _suite(tmp_path)
    junit = tmp_path / "pytest.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", f"--junitxml={junit}", str(suite)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the repository's pytest configuration
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"\b2 passed\b", proc.stdout) and re.search(r"\b1 failed\b", proc.stdout), proc.stdout
    # Both workers ran scenarios: namespaces of two runs existed side by side.
    assert {"gw0", "gw1"} <= set(re.findall(r"\[(gw\d+)\]", proc.stdout)), proc.stdout
    cases = {c.get("name"): c.find("failure") is None for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases == {"shard-a": True, "shard-b": True, "shard-c-fails": False}
