"""``expect: - censor: {...}``: the schema, the scenario's cross-checks, and the evaluation
against a censor summary shaped like the real one (docs/policy.md, "Results")."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from testbed.calls import evaluate as evaluate_calls
from testbed.censor.expect import check_censor
from testbed.errors import ScenarioError
from testbed.runner import evaluate
from testbed.scenario.expect_schema import DropCause, Expectation
from testbed.scenario.loader import parse_scenario


def _rule(name: str, **counters: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "action": "drop", "matched_flows": 0, "packets": 0, "bytes": 0, "accepted": 0,
        "dropped": 0, "delayed": 0, "rejected": 0, "rewritten": 0, "drops": {}, "max_hold_s": 0.0,
    }  # fmt: skip
    base.update(counters)
    return base


SUMMARY: dict[str, Any] = {
    "packets": 120, "bytes": 40_000, "malformed": 0, "actions": {"accept": 100, "drop": 20},
    "rules": [
        _rule("sni-i", matched_flows=1, packets=8, accepted=3, rejected=5, rewritten=1,
              drops={"reject": 1, "residual": 4}),
        _rule("stun", matched_flows=2, packets=15, dropped=15, drops={"drop": 15}),
    ],
    "default": _rule("default", packets=97, accepted=97),
    "flows_evaluated": 6,
}  # fmt: skip


def _exp(censor: dict[str, Any]) -> Expectation:
    return Expectation.model_validate({"censor": censor})


def _results(censor: dict[str, Any], summary: dict[str, Any] = SUMMARY) -> list[tuple[bool, str, str]]:
    return [(r.passed, r.what, r.detail) for r in check_censor([_exp(censor)], summary)]


# -- schema ---------------------------------------------------------------------------------------


def test_bounds_min_max_and_a_bare_number_is_exact() -> None:
    c = _exp({"rule": "x", "rewritten": {"min": 1}, "dropped": 0, "packets": {"min": 2, "max": 9},
              "drops": {"residual": {"min": 1}}}).censor  # fmt: skip
    assert c is not None and c.rewritten is not None and c.dropped is not None and c.packets is not None
    assert (c.rewritten.min, c.rewritten.max) == (1, None)
    assert (c.dropped.min, c.dropped.max) == (0, 0) and c.dropped.describe() == "== 0"
    assert c.packets.describe() == "between 2 and 9"
    assert [n for n, _ in c.bounds()] == ["packets", "dropped", "rewritten", "drops.residual"]
    assert DropCause.RESIDUAL in c.drops


@pytest.mark.parametrize(
    ("censor", "loc"),
    [
        ({"rule": "x"}, ("censor",)),  # no counter
        ({"rule": "x", "droped": 1}, ("censor", "droped")),
        ({"rule": "x", "dropped": True}, ("censor", "dropped")),
        ({"rule": "x", "dropped": -1}, ("censor", "dropped", "min")),
        ({"rule": "x", "dropped": {"min": 3, "max": 1}}, ("censor", "dropped", "max")),
        ({"rule": "x", "dropped": 1.5}, ("censor", "dropped")),
        ({"rule": "x", "drops": {"resid": 1}}, ("censor", "drops", "resid")),
        ({"rule": "x", "flows": 1}, ("censor",)),  # flows is the whole censor's
    ],
)
def test_bad_censor_checks_point_at_the_key(censor: dict[str, Any], loc: tuple[object, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        _exp(censor)
    assert info.value.errors()[0]["loc"][: len(loc)] == loc


def test_a_censor_entry_does_not_mix_with_call_checks() -> None:
    with pytest.raises(ValidationError, match="move call, connected"):
        Expectation.model_validate({"call": "a", "connected": True, "censor": {"dropped": 0}})


_SCENARIO = """\
name: x
probes: [{name: p, node: caller, run: ["true"]}]
censor:
  rules:
    - {name: sni-reset, match: {sni: blocked.example}, action: {reject: rewrite}}
expect:
  - censor: {rule: sni-rest, rewritten: {min: 1}}
"""


def test_unknown_rule_is_a_scenario_error_with_line_and_did_you_mean() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_SCENARIO, "s.yaml")
    err = info.value
    assert (err.line, err.key) == (7, "expect[0].censor.rule")
    assert "unknown rule 'sni-rest'" in str(err) and "did you mean 'sni-reset'?" in str(err)
    assert str(err).startswith("s.yaml:7:")


def test_a_rule_name_with_no_rules_says_to_omit_it() -> None:
    text = "name: x\nprobes: [{name: p, node: caller, run: ['true']}]\nexpect:\n  - censor: {rule: a, dropped: 0}\n"
    with pytest.raises(ScenarioError, match="has no rules"):
        parse_scenario(text, "s.yaml")


def test_a_misspelt_counter_suggests_the_right_one() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_SCENARIO.replace("sni-rest, rewritten", "sni-reset, rewriten"), "s.yaml")
    assert info.value.line == 7 and "did you mean 'rewritten'" in str(info.value)


# -- evaluation -----------------------------------------------------------------------------------


def test_per_rule_counters_pass_and_fail_with_expected_and_measured() -> None:
    got = _results({"rule": "sni-i", "rewritten": {"min": 1}, "dropped": 0, "drops": {"residual": {"min": 5}}})
    assert got == [
        (True, "censor rule sni-i: dropped == 0", "expected == 0, measured 0"),
        (True, "censor rule sni-i: rewritten >= 1", "expected >= 1, measured 1"),
        (False, "censor rule sni-i: drops.residual >= 5", "expected >= 5, measured 4"),
    ]
    (r,) = check_censor([_exp({"rule": "sni-i", "rewritten": 1})], SUMMARY)
    assert r.to_json() == {"what": "censor rule sni-i: rewritten == 1", "passed": True,
                           "detail": "expected == 1, measured 1", "expected": "== 1", "measured": 1}  # fmt: skip


def test_a_cause_that_never_happened_is_a_measured_zero() -> None:
    assert _results({"rule": "stun", "drops": {"residual": 0, "policed": {"min": 1}}}) == [
        (True, "censor rule stun: drops.residual == 0", "expected == 0, measured 0"),
        (False, "censor rule stun: drops.policed >= 1", "expected >= 1, measured 0"),
    ]


def test_whole_censor_counters_sum_the_rules_and_the_default() -> None:
    got = _results({"flows": {"min": 1}, "dropped": {"max": 20}, "accepted": 100, "packets": 120,
                    "matched_flows": 3, "drops": {"drop": 15}})  # fmt: skip
    assert all(ok for ok, _, _ in got), got
    assert [w for _, w, _ in got][0] == "censor totals: matched_flows == 3"


def test_missing_counters_fail_clearly() -> None:
    summary = {**SUMMARY, "rules": [r for r in SUMMARY["rules"] if r["name"] != "stun"]}
    assert _results({"rule": "stun", "dropped": {"min": 1}}, summary) == [
        (False, "censor rule stun: dropped >= 1", "the censor reported no counters for rule 'stun'")
    ]
    assert _results({"dropped": 0}, {})[0][2] == "the censor reported no counters"


def test_censor_entries_are_not_call_checks_and_the_runner_evaluates_them() -> None:
    sc = parse_scenario(_SCENARIO.replace("sni-rest", "sni-reset"), "s.yaml")
    assert evaluate_calls(sc.expect, []) == []  # no "every call" check hides in it
    censor = {**SUMMARY, "rules": [_rule("sni-reset", rewritten=0)]}
    (r,) = evaluate(sc, [], [], censor)[1:]  # after the probe's own exit check
    assert (r.passed, r.what, r.measured) == (False, "censor rule sni-reset: rewritten >= 1", 0)
