"""testbed matrix: cells from crafted results, the grid's renderings, --censors and expect_matrix errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from testbed.cli import main
from testbed.errors import ScenarioError, UsageError
from testbed.matrix import (
    Cell,
    Column,
    Outcome,
    Workload,
    WorkloadKind,
    build_matrix,
    derive_cells,
    format_table,
    matrix_json,
    parse_censors,
    scenario_variant,
    workloads_of,
    write_junit,
)
from testbed.report.matrix_html import matrix_page
from testbed.scenario.loader import LoadedScenario, load_scenario, parse_scenario
from testbed.scenario.profiles import load_shipped_profile

SCENARIO = """\
name: mx
nodes:
  caller: {side: inside}
  server: {side: outside, services: [https]}
censor:
  lists: {twitter: [server]}
  rules:
    - {name: own, match: {sni: example.com}, action: drop}
calls:
  - {name: talk, from: caller, to: server}
probes:
  - {name: web, node: caller, run: [curl, "https://{server}/"], expect: {within: 10s}}
  - {name: rep, node: caller, run: [curl, x], repeat: {every: 1s, until: 5s}}
"""


def _scenario(extra: str = "") -> Any:
    return parse_scenario(SCENARIO + extra, "mx.yaml")


def _wl() -> list[Workload]:
    return workloads_of(_scenario())


def _result(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "mx", "error": None, "calls": [], "probes": [], "censor": {}}
    base.update(kw)
    return base


def _call(outcome: str = "ok", connected: bool = True, ttf: float | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": "talk", "connected": connected, "outcome": outcome, "time_to_failure_s": ttf, **kw}


def _probe(name: str = "web", code: int | None = 0, took: float = 1.0, attempts: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "exit_code": code, "duration_s": took, "started_s": 2.0}
    if attempts is not None:
        out["attempts"] = [{"t_s": t, "exit": e, "duration_s": 0.1} for t, e in attempts]
    return out


OK_PROBES = [_probe(), _probe("rep", attempts=[(2.0, 0), (3.0, 0)])]


# --- cells ---------------------------------------------------------------------------------------


def test_workloads_calls_probes_and_kinds() -> None:
    wl = _wl()
    assert [(w.name, w.kind) for w in wl] == [
        ("talk", WorkloadKind.CALL),
        ("web", WorkloadKind.PROBE),
        ("rep", WorkloadKind.PROBE),
    ]
    assert wl[1].within_s == 10.0 and wl[2].within_s is None


def test_app_probe_kind() -> None:
    text = SCENARIO.replace("caller: {side: inside}", "caller: {side: inside, apps: [{name: a, run: [sleep, '99']}]}")
    kinds = {w.name: w.kind for w in workloads_of(parse_scenario(text, "mx.yaml"))}
    assert kinds["web"] is WorkloadKind.APP_PROBE


def test_call_outcomes() -> None:
    wl = _wl()
    cells = derive_cells(_result(calls=[_call("blocked", ttf=4.2)], probes=OK_PROBES), wl)
    assert cells["talk"].outcome is Outcome.BLOCKED and cells["talk"].blocked_after_s == 4.2
    assert cells["talk"].text == "blocked after 4.2 s"
    cells = derive_cells(_result(calls=[_call("degraded")], probes=OK_PROBES), wl)
    assert cells["talk"].outcome is Outcome.DEGRADED
    cells = derive_cells(_result(calls=[_call("blocked", connected=False, error="ice failed")], probes=OK_PROBES), wl)
    assert cells["talk"].outcome is Outcome.BLOCKED and cells["talk"].blocked_after_s is None
    assert "ice failed" in cells["talk"].detail
    assert derive_cells(_result(calls=[_call()], probes=OK_PROBES), wl)["talk"].outcome is Outcome.OK


def test_one_shot_probe_outcomes() -> None:
    wl = _wl()
    calls = [_call()]
    failed = derive_cells(_result(calls=calls, probes=[_probe(code=35, took=0.3), OK_PROBES[1]]), wl)["web"]
    assert (failed.outcome, failed.blocked_after_s) == (Outcome.BLOCKED, 0.3)
    timed_out = derive_cells(_result(calls=calls, probes=[_probe(code=None, took=30.0), OK_PROBES[1]]), wl)["web"]
    assert timed_out.outcome is Outcome.BLOCKED and "timed out" in timed_out.detail
    over_within = derive_cells(_result(calls=calls, probes=[_probe(took=12.0), OK_PROBES[1]]), wl)["web"]
    assert over_within.outcome is Outcome.DEGRADED
    # No `within`: slower than 3x the control run (and 2 s more) is degraded, not ok.
    nowithin = [Workload("web", WorkloadKind.PROBE)]
    control = _result(probes=[_probe(took=1.0)])
    slow = derive_cells(_result(probes=[_probe(took=9.0)]), nowithin, control)["web"]
    assert slow.outcome is Outcome.DEGRADED
    assert derive_cells(_result(probes=[_probe(took=2.5)]), nowithin, control)["web"].outcome is Outcome.OK


def test_repeated_probe_outcomes() -> None:
    wl = [Workload("rep", WorkloadKind.PROBE)]
    blocked = derive_cells(_result(probes=[_probe("rep", attempts=[(2.0, 0), (3.0, 0), (6.2, 35), (7.0, 35)])]), wl)
    assert blocked["rep"].outcome is Outcome.BLOCKED
    assert blocked["rep"].blocked_after_s == pytest.approx(4.2)  # first failure - start
    mixed = derive_cells(_result(probes=[_probe("rep", attempts=[(2.0, 0), (3.0, 7), (4.0, 0)])]), wl)
    assert mixed["rep"].outcome is Outcome.DEGRADED
    ok = derive_cells(_result(probes=[_probe("rep", attempts=[(2.0, 0), (3.0, 0)])]), wl)
    assert ok["rep"].outcome is Outcome.OK and ok["rep"].rule is None


def _rule(name: str, **counters: Any) -> dict[str, Any]:
    return {"name": name, "dropped": 0, "rejected": 0, "delayed": 0, **counters}


def test_rule_attribution() -> None:
    wl = [Workload("web", WorkloadKind.PROBE)]
    one = {"rules": [_rule("p/a", rejected=3), _rule("p/b")]}
    cells = derive_cells(_result(probes=[_probe(code=35)], censor=one), wl)
    assert cells["web"].rule == "p/a"
    residual_only = {"rules": [_rule("p/a", drops={"residual": 2}), _rule("p/b")]}
    assert derive_cells(_result(probes=[_probe(code=35)], censor=residual_only), wl)["web"].rule == "p/a"
    # Two rules acted, and a probe's flows are not known by address: say so, do not guess.
    two = {"rules": [_rule("p/a", dropped=1), _rule("p/b", rejected=1)]}
    assert derive_cells(_result(probes=[_probe(code=35)], censor=two), wl)["web"].rule == "?"
    # Nothing acted (the failure is not the censor's rules'): unattributed.
    assert derive_cells(_result(probes=[_probe(code=35)], censor={"rules": [_rule("x")]}), wl)["web"].rule == "?"


def test_rule_attribution_by_call_flow() -> None:
    wl = [Workload("talk", WorkloadKind.CALL)]
    pair = {"local_address": "198.18.1.2", "local_port": 5000, "remote_address": "198.18.2.2", "remote_port": 6000}
    censor = {
        "rules": [_rule("p/a", dropped=5), _rule("p/b", dropped=9)],
        "events": [
            {"t": 1.0, "event": "match", "rule": "p/a", "flow": "198.18.1.2:4444 <-> 198.18.2.2:443"},
            {"t": 2.0, "event": "match", "rule": "p/b", "endpoints": ["198.18.1.2:5000", "198.18.2.2:6000"]},
        ],
    }
    call = _call("blocked", ttf=1.5, selected_candidate_pair=pair)
    assert derive_cells(_result(calls=[call], censor=censor), wl)["talk"].rule == "p/b"


def test_run_error_is_error_cell() -> None:
    cells = derive_cells(_result(error="the censor died"), _wl())
    assert {c.outcome for c in cells.values()} == {Outcome.ERROR}


def test_an_app_that_never_got_ready_under_a_censor_is_blocked_not_an_error() -> None:
    # A VPN client is ready once its tunnel is up; a censor that blocks the tunnel stops the run
    # before any workload starts. Ready without a censor: blocked (by the one rule that acted).
    failed = _result(error="app 'vpn' on caller was not ready ...", error_kind="app-not-ready")
    failed["censor"] = {"rules": [_rule("vpn", dropped=12), _rule("idle")]}
    cells = derive_cells(failed, _wl(), control=_ok_result())
    assert {c.outcome for c in cells.values()} == {Outcome.BLOCKED}
    assert {c.rule for c in cells.values()} == {"vpn"}
    # Not ready even without a censor: the run is broken, an error (nothing to compare with).
    assert {c.outcome for c in derive_cells(failed, _wl()).values()} == {Outcome.ERROR}
    other = _result(error="the censor died", error_kind=None)
    assert {c.outcome for c in derive_cells(other, _wl(), control=_ok_result()).values()} == {Outcome.ERROR}


# --- the matrix ----------------------------------------------------------------------------------


def _ok_result() -> dict[str, Any]:
    return _result(calls=[_call()], probes=OK_PROBES)


def test_broken_when_control_fails() -> None:
    sc = _scenario()
    control = _result(calls=[_call()], probes=[_probe(code=6), OK_PROBES[1]])
    blocked = _result(calls=[_call("blocked", ttf=3.0)], probes=[_probe(code=6), OK_PROBES[1]])
    m = build_matrix([(sc, {"none": control, "p": blocked})], ["none", "p"])
    rows = {r.workload: r for r in m.rows}
    assert rows["web"].cells["none"].outcome is Outcome.BROKEN
    assert rows["web"].cells["p"].outcome is Outcome.BROKEN
    assert rows["web"].cells["p"].measured is Outcome.BLOCKED
    assert rows["talk"].cells["p"].text == "blocked after 3.0 s"  # its control worked
    assert m.passed  # a measurement: no expectations, no errors


def test_a_probe_written_to_fail_that_fails_without_a_censor_is_left_out_of_the_grid(tmp_path: Path) -> None:
    neg = "  - {name: wrong-key, node: caller, run: [curl, x], expect: {exit: 97}}\n"
    direct = "  - {name: direct, node: caller, run: [curl, y], expect: {exit: 35}}\n"
    sc = _scenario(neg + direct + "expect_matrix: {tspu-vpn: {wrong-key: blocked}}\n")
    probes = [*OK_PROBES, _probe("wrong-key", code=97), _probe("direct", code=0)]
    censored = [*OK_PROBES, _probe("wrong-key", code=97), _probe("direct", code=35)]
    m = build_matrix(
        [
            (
                sc,
                {
                    "none": _result(calls=[_call()], probes=probes),
                    "tspu-vpn": _result(calls=[_call()], probes=censored),
                },
            )
        ],
        ["none", "tspu-vpn"],
    )
    assert [r.workload for r in m.rows] == ["talk", "web", "rep", "direct"]  # direct works without a censor
    assert m.rows[-1].cells["tspu-vpn"].outcome is Outcome.BLOCKED
    assert [(x.workload, "fails without a censor too" in x.reason) for x in m.left_out] == [("wrong-key", True)]
    assert "not in the grid: mx / wrong-key" in format_table(m)
    assert "not in the grid" in matrix_page(m)
    assert matrix_json(m)["matrix"]["not_in_grid"][0]["workload"] == "wrong-key"  # type: ignore[index]
    # An expectation on it is still checked (it reads broken, as the row would have).
    [check] = m.checks
    assert (check.workload, check.got, check.passed) == ("wrong-key", Outcome.BROKEN, False)


def test_errors_and_checks_decide_passed() -> None:
    extra = "expect_matrix:\n  none: ok\n  tspu-2022-sni: {web: blocked}\n  tspu-vpn: blocked\n"
    sc = _scenario(extra)
    blocked = _result(calls=[_call()], probes=[_probe(code=35), OK_PROBES[1]])
    m = build_matrix([(sc, {"none": _ok_result(), "tspu-2022-sni": blocked})], ["none", "tspu-2022-sni"])
    assert m.passed
    skipped = [c for c in m.checks if c.got is None]
    assert {c.censor for c in skipped} == {"tspu-vpn"}  # not in this matrix: skipped, not failed
    m = build_matrix([(sc, {"none": _ok_result(), "tspu-2022-sni": _ok_result()})], ["none", "tspu-2022-sni"])
    assert not m.passed
    [bad] = [c for c in m.checks if not c.passed]
    assert (bad.workload, bad.censor, bad.got) == ("web", "tspu-2022-sni", Outcome.OK)
    broke = build_matrix([(_scenario(), {"none": _ok_result(), "p": _result(error="boom")})], ["none", "p"])
    assert not broke.passed and broke.errors == (("mx", "p", "boom"),)


def _sample_matrix() -> Any:
    sc = _scenario("expect_matrix: {tspu-2025-calls: blocked}\n")
    censor = {"rules": [_rule("tspu-2025-calls/x", dropped=4)]}
    blocked = _result(
        calls=[_call("blocked", ttf=4.2)], probes=[_probe(code=35, took=0.3), OK_PROBES[1]], censor=censor
    )
    links = {("mx", c): f"mx/{c}/mx.html" for c in ("none", "tspu-2025-calls")}
    return build_matrix(
        [(sc, {"none": _ok_result(), "tspu-2025-calls": blocked})], ["none", "tspu-2025-calls"], links=links
    )


def test_table_json_html_junit(tmp_path: Path) -> None:
    m = _sample_matrix()
    table = format_table(m).splitlines()
    assert table[0].split() == ["scenario", "workload", "kind", "none", "tspu-2025-calls"]
    talk = next(line for line in table if " talk " in line)
    assert "blocked after 4.2 s [tspu-2025-calls/x]" in talk and " ok " in talk
    assert table[-1].startswith("expect_matrix: 2 held, 1 failed")  # rep is ok under the call profile
    doc = json.loads(json.dumps(matrix_json(m)))
    assert doc["matrix"]["censors"] == ["none", "tspu-2025-calls"]
    row = next(r for r in doc["matrix"]["rows"] if r["workload"] == "talk")
    assert (row["scenario"], row["kind"]) == ("mx", "call")
    assert row["cells"]["tspu-2025-calls"] == {
        "outcome": "blocked",
        "blocked_after_s": 4.2,
        "rule": "tspu-2025-calls/x",
        "text": "blocked after 4.2 s",
        "detail": "",
        "run_page": "mx/tspu-2025-calls/mx.html",
    }
    assert row["cells"]["none"]["outcome"] == "ok" and row["cells"]["none"]["rule"] is None
    page = matrix_page(m)
    assert page.count("<tr>") == 1 + 3
    assert 'href="mx/tspu-2025-calls/mx.html"' in page and "#f4b6b6" in page and "#c8e6c9" in page
    assert "wanted blocked, got ok" in page
    junit = tmp_path / "j.xml"
    write_junit(m, junit)
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "1", "0")


def test_table_cell_text_for_broken_and_error() -> None:
    assert Cell(Outcome.BROKEN, measured=Outcome.BLOCKED).text == "broken"
    assert Cell(Outcome.BLOCKED).text == "blocked"
    assert Cell(Outcome.ERROR).to_json()["outcome"] == "error"


# --- columns and variants ------------------------------------------------------------------------


def test_parse_censors(tmp_path: Path) -> None:
    cols = parse_censors("tspu-vpn,none", base_dir=tmp_path)
    assert [c.name for c in cols] == ["none", "tspu-vpn"]
    assert len(parse_censors("all", base_dir=tmp_path)) >= 16
    for bad in ("", " ", "a,,b", ","):
        with pytest.raises(UsageError, match="--censors needs profile names"):
            parse_censors(bad, base_dir=tmp_path)
    with pytest.raises(UsageError, match="did you mean 'tspu-2022-sni'"):
        parse_censors("tspu-2022-sn", base_dir=tmp_path)
    with pytest.raises(UsageError, match="twice"):
        parse_censors("tspu-vpn,tspu-vpn", base_dir=tmp_path)
    (tmp_path / "bad.yaml").write_text("name: bad\nsummary: x\nrules:\n  - {name: r, match: {nope: 1}, action: drop}\n")
    with pytest.raises(ScenarioError) as info:
        parse_censors("./bad.yaml", base_dir=tmp_path)
    assert info.value.line == 4 and "nope" in str(info.value)


def test_variant_replaces_rules_keeps_lists_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "mx.yaml"
    path.write_text(
        SCENARIO.replace("censor:\n", "censor:\n  inspect_packets: 7\n") + "expect: [{call: talk, connected: true}]\n"
    )
    loaded = load_scenario(path)
    none = scenario_variant(loaded, Column("none", None)).scenario
    assert none.censor.rules == () and none.censor.lists == loaded.scenario.censor.lists
    assert none.censor.inspect_packets == 7 and none.expect == ()
    sni = load_shipped_profile("tspu-2022-sni")
    with_profile = scenario_variant(loaded, Column(sni.name, sni)).scenario.censor
    names = [r.name for r in with_profile.rules]
    assert names and all(n.startswith("tspu-2022-sni/") for n in names)  # `own` is gone
    assert with_profile.lists["twitter"] == loaded.scenario.censor.lists["twitter"]  # the scenario's list wins
    assert with_profile.inspect_packets == 7


def test_variant_starts_from_own_censor_not_merged_profiles(tmp_path: Path) -> None:
    path = tmp_path / "mx.yaml"
    path.write_text(SCENARIO.replace("censor:\n", "censor:\n  profiles: [tspu-vpn]\n"))
    loaded = load_scenario(path)
    assert any(r.name.startswith("tspu-vpn/") for r in loaded.scenario.censor.rules)
    sni = load_shipped_profile("tspu-2022-sni")
    rules = scenario_variant(loaded, Column(sni.name, sni)).scenario.censor.rules
    assert rules and not any(r.name.startswith("tspu-vpn/") for r in rules)
    assert isinstance(loaded, LoadedScenario)


# --- expect_matrix validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("expect_matrix:\n  none: ok\n  tspu-2022-sn: blocked\n", 16, "did you mean 'tspu-2022-sni'"),
        ("expect_matrix:\n  tspu-vpn: {webb: blocked}\n", 15, "unknown workload 'webb' (did you mean 'web'?)"),
        ("expect_matrix:\n  tspu-vpn: blok\n", 15, "'ok', 'degraded', 'blocked' or 'broken'"),
        ("expect_matrix:\n  none: [ok, nope]\n", 15, "'ok', 'degraded', 'blocked' or 'broken'"),
    ],
)
def test_expect_matrix_errors(extra: str, line: int, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _scenario(extra)
    assert info.value.line == line and message in str(info.value)


def test_expect_matrix_forms_accepted() -> None:
    sc = _scenario(
        "expect_matrix:\n  none: ok\n  tspu-vpn: [ok, degraded]\n  tspu-2025-calls: {talk: blocked, web: ok}\n"
        "  ./my-profile.yaml: blocked\n"
    )
    assert set(sc.expect_matrix) == {"none", "tspu-vpn", "tspu-2025-calls", "./my-profile.yaml"}


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mx.yaml"
    path.write_text(SCENARIO)
    assert main(["matrix", str(path), "--censors", ""]) == 2
    assert "--censors needs profile names" in capsys.readouterr().err
    assert main(["matrix", str(path), "--censors", "tspu-vnp"]) == 2
    err = capsys.readouterr().err
    assert "unknown censor profile 'tspu-vnp'" in err and "did you mean 'tspu-vpn'" in err
    assert "Traceback" not in err
    assert main(["matrix", str(tmp_path / "missing.yaml"), "--censors", "tspu-vpn"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["matrix", str(path), "--censors", "tspu-vpn", "-j", "0"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["matrix", str(path)])  # --censors is required
    assert exc.value.code == 2


def test_expect_matrix_knows_the_same_profiles_as_the_catalogue() -> None:
    from testbed.scenario.profiles import shipped_profile_names

    for name in shipped_profile_names():
        assert name in _scenario(f"expect_matrix: {{{name}: ok}}\n").expect_matrix
