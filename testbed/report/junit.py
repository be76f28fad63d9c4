"""JUnit XML (``testbed run --junit FILE``) for CI systems: one testcase per expectation.

The shape is the one Jenkins, GitLab, GitHub test reporters and pytest's own ``--junitxml`` agree
on::

    <testsuites name="testbed" tests failures errors time>
      <testsuite name="<scenario>" tests failures errors skipped time timestamp? file>
        <properties>  run_id, seed, file, censor totals  </properties>
        <testcase classname="<scenario>" name="<expectation>" time="<call wall time>">
          <properties>  expected, measured, and the call's setup_ms / mos / loss_pct / outcome  </properties>
          <failure message="<detail>" type="expectation">expected: ... measured: ...</failure>
          <system-out><detail></system-out>
        </testcase>
        <testcase classname="<scenario>" name="run">          only when the run itself broke
          <error message="<first line>" type="run-error"><the whole error></error>
        </testcase>

A scenario with neither expectations nor an error still gets one passing ``run`` testcase, so
it shows up in CI at all.  Works on ``ScenarioResult.to_json()`` dicts.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.records.json import JsonObject
from testbed.report.digest import as_dict, call_digest, mapping

__all__ = ["build_junit", "write_junit"]

# XML 1.0 forbids most C0 controls even escaped; an error message from a subprocess may carry them.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, float):
        s = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        s = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        s = str(value)
    return _INVALID_XML.sub("\ufffd", s)


def _properties(parent: ET.Element, props: Iterable[tuple[str, Any]]) -> None:
    items = [(k, v) for k, v in props if v is not None]
    if not items:
        return
    el = ET.SubElement(parent, "properties")
    for name, value in items:
        ET.SubElement(el, "property", name=_text(name), value=_text(value))


def _call_for(
    what: str, expectation: Mapping[str, Any], calls: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    name = expectation.get("call")
    if isinstance(name, str) and name in calls:
        return calls[name]
    head = what.split(": ", 1)[0]
    return calls.get(head)


def _expected_measured(e: Mapping[str, Any]) -> str:
    parts = []
    if "expected" in e:
        parts.append(f"expected: {_text(e['expected'])}")
    if "measured" in e:
        parts.append(f"measured: {_text(e['measured'])}")
    return "\n".join(parts)


def _suite(result: Mapping[str, Any]) -> ET.Element:
    name = str(result.get("name", "?"))
    suite = ET.Element("testsuite", name=_text(name))
    calls = {str(c.get("name")): c for c in result.get("calls") or [] if isinstance(c, Mapping)}
    expectations = [e for e in result.get("expectations") or [] if isinstance(e, Mapping)]
    censor = mapping(result.get("censor"))
    # <properties> first: strict schema readers (the Jenkins XSD) want it before any testcase.
    _properties(
        suite,
        [
            ("file", result.get("file")),
            ("run_id", result.get("run_id")),
            ("seed", result.get("seed")),
            ("censor.packets", censor.get("packets")),
            ("censor.bytes", censor.get("bytes")),
            ("censor.flows", len(censor["flows"]) if isinstance(censor.get("flows"), list) else None),
        ],
    )
    tests = failures = errors = 0
    for e in expectations:
        what = str(e.get("what", "?"))
        call = _call_for(what, e, calls)
        case = ET.SubElement(suite, "testcase", classname=_text(name), name=_text(what))
        wall = call.get("wall_s") if call else None
        case.set("time", f"{float(wall):.3f}" if isinstance(wall, (int, float)) else "0.000")
        props: list[tuple[str, Any]] = [("expected", e.get("expected")), ("measured", e.get("measured"))]
        if call is not None:
            d = call_digest(call, expectations)
            props += [
                ("call", d.name),
                ("outcome", d.outcome),
                ("connected", str(d.connected).lower()),
                ("setup_ms", d.setup_ms),
                ("mos", d.mos),
                ("loss_pct", None if d.loss_pct is None else round(d.loss_pct, 3)),
                ("time_to_failure_s", d.time_to_failure_s),
            ]
        _properties(case, props)
        detail = _text(e.get("detail"))
        tests += 1
        if not e.get("passed"):
            failures += 1
            failure = ET.SubElement(case, "failure", message=detail or what, type="expectation")
            failure.text = "\n".join(p for p in (detail, _expected_measured(e)) if p)
        if detail:
            ET.SubElement(case, "system-out").text = detail
    error = result.get("error")
    if error or not expectations:
        case = ET.SubElement(suite, "testcase", classname=_text(name), name="run")
        case.set("time", f"{float(result.get('duration_s') or 0):.3f}")
        tests += 1
        if error:
            errors += 1
            text = _text(error)
            el = ET.SubElement(case, "error", message=text.splitlines()[0] if text else "run error", type="run-error")
            el.text = text
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", f"{float(result.get('duration_s') or 0):.3f}")
    if result.get("file"):
        suite.set("file", _text(result["file"]))
    return suite


def build_junit(results: Sequence[Any]) -> ET.Element:
    """The ``<testsuites>`` element for ``results`` (dicts, or objects with ``to_json()``)."""
    root = ET.Element("testsuites", name="testbed")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    time_s = 0.0
    for r in results:
        suite = _suite(as_dict(r))
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        time_s += float(suite.get("time", "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{time_s:.3f}")
    return root


def write_junit(results: list[JsonObject], path: Path) -> None:
    """Write the JUnit XML for ``results`` to ``path`` (atomically: a temp file, then rename)."""
    root = build_junit(results)
    ET.indent(root)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=True)
        f.write(b"\n")
    tmp.replace(path)
