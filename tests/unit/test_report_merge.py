"""``testbed report merge OUT_DIR SHARD...``: shard outputs crafted on disk merge into the report one
run of every scenario would have written."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_report_data import error_result, legacy_result, rich_result

from testbed.report.html import write_html_report
from testbed.report.junit import write_junit
from testbed.report.merge import MergeError, load_shard, merge_results, write_merged

CLI = [sys.executable, "-m", "testbed.cli"]
PCAP = b"\x0a\x0d\x0d\x0a" + bytes(range(60))  # contents do not matter, only that they are carried over


def _one_run() -> list[dict[str, Any]]:
    """The three results in the order one `testbed run scenarios/` lists them (by file)."""
    return sorted([legacy_result(), rich_result(), error_result()], key=lambda r: r["file"])


def _shard(
    root: Path,
    name: str,
    results: list[dict[str, Any]],
    *,
    split: tuple[int, int] | None = None,
    version: int = 1,
    given: list[str] | None = None,
) -> Path:
    d = root / name
    d.mkdir()
    doc: dict[str, Any] = {
        "testbed_version": "0.1.0",
        "schema_version": version,
        "passed": all(r["passed"] for r in results),
    }
    if split is not None:
        doc["shard"] = {
            "index": split[0],
            "total": split[1],
            "scenarios": given if given is not None else [r["name"] for r in results],
        }
    doc["scenarios"] = results
    (d / "results.json").write_text(json.dumps(doc))
    return d


def _two_shards(tmp_path: Path) -> list[Path]:
    rich = rich_result()
    # Where the shard's machine wrote its capture: a path that does not exist on the merging one.
    rich["censor"]["capture"] = {"file": "/builds/job-2/out/shard-2/html/pcap/dtls-cut-a1b2c3.pcapng", "packets": 9}
    s1 = _shard(tmp_path, "shard-1", [legacy_result(), error_result()], split=(1, 2))
    s2 = _shard(tmp_path, "shard-2", [rich], split=(2, 2))
    (s2 / "html" / "pcap").mkdir(parents=True)
    (s2 / "html" / "pcap" / "dtls-cut-a1b2c3.pcapng").write_bytes(PCAP)
    return [s1, s2]


def test_merge_writes_what_one_run_would_have(tmp_path: Path) -> None:
    shards = _two_shards(tmp_path)
    out = tmp_path / "merged"
    merged = write_merged(out, shards)
    assert merged.complete

    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 1 and doc["passed"] is False
    one = _one_run()
    assert [s["name"] for s in doc["scenarios"]] == [r["name"] for r in one] == ["baseline", "censor-dies", "dtls-cut"]
    # Scenarios are carried over untouched (the capture path too: the shard's).
    assert {s["name"]: s for s in doc["scenarios"]}["baseline"] == legacy_result()

    # JUnit: byte for byte the file one run would have written.
    expected = tmp_path / "one.xml"
    write_junit(one, expected)
    assert (out / "junit.xml").read_bytes() == expected.read_bytes()
    root = ET.parse(out / "junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")

    # HTML: the same index, a page per scenario, the capture copied from the shard and linked.
    one_html = tmp_path / "one-html"
    write_html_report(one, one_html)
    assert (out / "html" / "index.html").read_text() == (one_html / "index.html").read_text()
    for page in ("baseline.html", "censor-dies.html", "dtls-cut.html"):
        assert (out / "html" / page).is_file()
    (pcap,) = (out / "html" / "pcap").iterdir()
    assert pcap.read_bytes() == PCAP
    assert f'href="pcap/{pcap.name}"' in (out / "html" / "dtls-cut.html").read_text()


def test_passed_is_recomputed(tmp_path: Path) -> None:
    a = _shard(tmp_path, "a", [legacy_result()])
    failing = rich_result()
    b = _shard(tmp_path, "b", [failing])
    assert merge_results([load_shard(a)]).document["passed"] is True
    assert merge_results([load_shard(a), load_shard(b)]).document["passed"] is False


def test_a_merged_directory_is_itself_a_shard(tmp_path: Path) -> None:
    shards = _two_shards(tmp_path)
    write_merged(tmp_path / "m1", shards[:1])
    write_merged(tmp_path / "m2", shards[1:])
    again = write_merged(tmp_path / "all", [tmp_path / "m1", tmp_path / "m2"])
    assert [s["name"] for s in again.scenarios] == ["baseline", "censor-dies", "dtls-cut"]
    assert list((tmp_path / "all" / "html" / "pcap").iterdir())  # the capture followed through both merges


def test_a_results_file_may_be_named_instead_of_its_directory(tmp_path: Path) -> None:
    s1, s2 = _two_shards(tmp_path)
    merged = write_merged(tmp_path / "out", [s1 / "results.json", s2])
    assert len(merged.scenarios) == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda t: [_shard(t, "a", [legacy_result()]), _shard(t, "b", [legacy_result()])],
            r"scenario 'baseline' is in .*a and .*b: merge each shard once",
        ),
        (
            lambda t: [_shard(t, "a", [legacy_result()], version=1), _shard(t, "b", [rich_result()], version=2)],
            r"schema versions differ \(.*a has 1, .*b has 2\)",
        ),
        (lambda t: [_shard(t, "a", [legacy_result()], version=99)], r"schema_version 99 is newer than this testbed"),
        (
            lambda t: [_shard(t, "a", [legacy_result()], split=(1, 2)), _shard(t, "b", [rich_result()], split=(2, 3))],
            r"shards of different splits",
        ),
        (
            lambda t: [_shard(t, "a", [legacy_result()], split=(1, 2)), _shard(t, "b", [rich_result()], split=(1, 2))],
            r"both shard 1/2",
        ),
        (lambda t: [t / "empty"], r"empty: no results.json; run each shard with `--json"),
    ],
)
def test_shards_that_do_not_make_one_report_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MergeError, match=message):
        write_merged(tmp_path / "out", make(tmp_path))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_scenario_with_another_schema_version_than_its_file_is_refused(tmp_path: Path) -> None:
    r = legacy_result()
    r["schema_version"] = 2
    with pytest.raises(MergeError, match="scenario 'baseline' has schema_version 2, the file 1"):
        load_shard(_shard(tmp_path, "a", [r]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "no 'scenarios' list"),
        ('{"scenarios": []}', "no integer 'schema_version'"),
        ('{"schema_version": 1, "scenarios": [{"name": "x"}]}', "has no 'name' and 'passed'"),
        ('{"schema_version": 1, "shard": {"index": 3, "total": 2, "scenarios": []}, "scenarios": []}', "not a shard"),
    ],
)
def test_files_that_are_not_results_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(MergeError, match=message):
        load_shard(tmp_path)


def test_a_missing_shard_or_an_early_stop_is_merged_but_marked_failed(tmp_path: Path) -> None:
    ok = legacy_result()
    a = _shard(tmp_path, "a", [ok], split=(1, 3), given=["baseline", "never-ran"])
    b = _shard(tmp_path, "b", [], split=(3, 3))
    merged = merge_results([load_shard(a), load_shard(b)])
    assert merged.missing_shards == (2,) and merged.missing_scenarios == ("never-ran",)
    assert merged.document["passed"] is False  # every result passed, but not every scenario has one
    assert merged.document["incomplete"] == {"missing_shards": [2], "missing_scenarios": ["never-ran"]}


def test_cli_merge_exit_codes_and_messages(tmp_path: Path) -> None:
    s1, s2 = _two_shards(tmp_path)
    proc = subprocess.run(
        [*CLI, "report", "merge", str(tmp_path / "out"), str(s1), str(s2)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stderr  # censor-dies and dtls-cut failed, as in their shards
    assert "1 passed, 2 failed" in proc.stdout and "merged 2 shard(s)" in proc.stderr
    good = _shard(tmp_path, "good", [legacy_result()], split=(1, 2))
    proc = subprocess.run(
        [*CLI, "report", "merge", str(tmp_path / "out2"), str(good)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "no results from shard 2/2" in proc.stderr
    proc = subprocess.run(
        [*CLI, "report", "merge", str(tmp_path / "out3"), str(s1), str(s1)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is in" in proc.stderr and "(twice)" in proc.stderr
    proc = subprocess.run([*CLI, "report", "merge", str(s1), str(s1)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "OUT_DIR is one of the shards" in proc.stderr
