"""JUnit XML: the elements and attributes CI systems read, from crafted result dicts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from test_report_data import all_results, error_result, legacy_result, rich_result

from testbed.report.junit import write_junit


def _write(tmp_path: Path, results: list[dict]) -> ET.Element:
    path = tmp_path / "out.xml"
    write_junit(results, path)
    assert not path.with_name("out.xml.tmp").exists()
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.parse(path).getroot()


def _props(el: ET.Element) -> dict[str, str]:
    props = el.find("properties")
    return {} if props is None else {p.get("name", ""): p.get("value", "") for p in props.findall("property")}


def test_structure_ci_systems_read(tmp_path: Path) -> None:
    root = _write(tmp_path, all_results())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["baseline", "dtls-cut", "censor-dies"]
    for suite in suites:
        for attr in ("name", "tests", "failures", "errors", "time"):
            assert suite.get(attr) is not None, attr
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "")) == len(cases)
        assert int(suite.get("failures", "")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors", "")) == sum(c.find("error") is not None for c in cases)
        float(suite.get("time", ""))
        for case in cases:
            assert case.get("classname") == suite.get("name")
            assert case.get("name")
            float(case.get("time", ""))
        # <properties> comes before any <testcase> (the Jenkins schema is ordered).
        assert [c.tag for c in suite][0] == "properties"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    assert float(root.get("time", "")) == 7.9 + 14.2 + 2.5


def test_one_testcase_per_expectation_with_measured_values(tmp_path: Path) -> None:
    suite = _write(tmp_path, [rich_result()]).find("testsuite")
    assert suite is not None
    assert _props(suite)["run_id"] == "a1b2c3"
    ok, bad = suite.findall("testcase")
    assert ok.get("name") == "video-call: connected == true" and ok.find("failure") is None
    assert bad.get("name") == "video-call: loss <= 5%"
    failure = bad.find("failure")
    assert failure is not None and failure.get("message") == "loss 58.0% > 5%"
    assert failure.text == "loss 58.0% > 5%\nexpected: <= 5%\nmeasured: 58"
    props = _props(bad)
    assert props["expected"] == "<= 5%" and props["measured"] == "58"
    assert props["outcome"] == "blocked" and props["mos"] == "1.4" and props["setup_ms"] == "88"
    assert props["time_to_failure_s"] == "3.7" and float(props["loss_pct"]) > 60
    assert _props(ok)["expected"] == "true"
    assert bad.get("time") == "11.000"


def test_legacy_result_has_no_new_properties(tmp_path: Path) -> None:
    case = _write(tmp_path, [legacy_result()]).find("testsuite/testcase")
    assert case is not None
    props = _props(case)
    assert "mos" not in props and "expected" not in props and "time_to_failure_s" not in props
    assert props["outcome"] == "connected" and props["setup_ms"] == "95.2"


def test_run_error_is_an_error_testcase_with_clean_text(tmp_path: Path) -> None:
    case = _write(tmp_path, [error_result()]).find("testsuite/testcase")
    assert case is not None and case.get("name") == "run"
    error = case.find("error")
    assert error is not None
    assert error.get("message") == "the censor engine exited unexpectedly mid-run (exit code 1)."
    assert error.text is not None and "boom \ufffd" in error.text  # the \x01 would be invalid XML


def test_scenario_without_expectations_still_shows_up(tmp_path: Path) -> None:
    r = legacy_result()
    r["expectations"] = []
    suite = _write(tmp_path, [r]).find("testsuite")
    assert suite is not None and suite.get("tests") == "1"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "run" and len(case) == 0


def test_empty_and_minimal(tmp_path: Path) -> None:
    root = _write(tmp_path, [])
    assert root.get("tests") == "0" and len(root) == 0
    root = _write(tmp_path, [{"name": "m", "passed": False, "expectations": [{"what": "w", "passed": False}]}])
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == "w"
