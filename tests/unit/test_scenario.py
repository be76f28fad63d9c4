"""Scenario files: valid ones load into the frozen model; invalid ones name file, line, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.errors import ScenarioError
from testbed.runner import precheck
from testbed.scenario.call_schema import Media
from testbed.scenario.common import Side, parse_duration
from testbed.scenario.loader import discover, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]


def test_shipped_scenarios_all_load() -> None:
    files = discover([REPO / "scenarios"])
    assert files, "the repository ships scenarios"
    for f in files:
        loaded = load_scenario(f)
        assert loaded.scenario.calls or loaded.scenario.probes
        assert loaded.scenario.source or loaded.scenario.name == "baseline", f"{f} cites no source"
        precheck(loaded)  # the policy compiles against the scenario's own nodes and lists


def test_baseline_defaults() -> None:
    sc = load_scenario(REPO / "scenarios" / "baseline.yaml").scenario
    assert sc.name == "baseline"
    assert sc.nodes["caller"].side is Side.INSIDE
    assert sc.nodes["callee"].side is Side.OUTSIDE
    (call,) = sc.calls
    assert (call.caller, call.callee, call.duration) == ("caller", "callee", 5.0)
    assert call.media == (Media.AUDIO, Media.DATA)
    assert sc.expect[0].connected is True


def test_minimal_scenario_gets_default_nodes() -> None:
    sc = parse_scenario("name: tiny\ncalls:\n  - name: c\n")
    assert set(sc.nodes) == {"caller", "callee"}
    assert sc.calls[0].duration == 5.0


def test_model_is_frozen() -> None:
    sc = parse_scenario("name: tiny\ncalls:\n  - name: c\n")
    with pytest.raises(ValueError):  # pydantic's ValidationError
        sc.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(5, 5.0), (2.5, 2.5), ("5s", 5.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), (" 3 s ", 3.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["fast", "5 parsecs", "-1s", True, None, [5]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return info.value


def test_unknown_key_names_line_and_suggests() -> None:
    err = _error("name: x\ncalls:\n  - name: a\n    durtion: 5\n")
    assert err.line == 4
    assert "unknown key 'durtion'" in str(err)
    assert "did you mean 'duration'" in str(err)
    assert str(err).startswith("s.yaml:4:")


def test_unknown_top_level_key() -> None:
    err = _error("name: x\ncals:\n  - name: a\n")
    assert err.line == 2
    assert "did you mean 'calls'" in str(err)


def test_wrong_type_names_key_and_value() -> None:
    err = _error("name: x\ncalls:\n  - name: a\n    duration: fast\n")
    assert (err.line, err.key) == (4, "calls[0].duration")
    assert "'fast'" in str(err)


def test_missing_required_key() -> None:
    err = _error("calls: [{name: a}]\n")
    assert "required key 'name' is missing" in str(err)


def test_no_calls_and_no_probes() -> None:
    err = _error("name: x\ncalls: []\n")
    assert "at least one call or probe" in str(err)
    assert "testbed up" in str(err)  # says where a scenario with nothing to run is fine


def test_up_takes_a_scenario_with_nothing_to_run() -> None:
    # `testbed up` is for the user's own tools: a network and a censor, no call, no probe.
    from testbed.scenario.loader import parse_scenario

    scenario = parse_scenario("name: x\ncensor:\n  rules:\n    - {name: d, action: drop}\n", idle_ok=True)
    assert scenario.calls == () and scenario.probes == ()
    assert sorted(scenario.nodes) == ["callee", "caller"]


def test_unknown_node_reference() -> None:
    err = _error("name: x\ncalls:\n  - name: a\n    to: bob\n")
    assert (err.line, err.key) == (4, "calls[0].to")
    assert err.hint == "choose one of: callee, caller"


def test_unknown_call_in_expectation() -> None:
    err = _error("name: x\ncalls:\n  - {name: a}\nexpect:\n  - call: b\n    connected: true\n")
    assert (err.line, err.key) == (5, "expect[0].call")


def test_expectation_without_check() -> None:
    err = _error("name: x\ncalls:\n  - {name: a}\nexpect:\n  - call: a\n")
    assert err.line == 5 and "at least one check" in str(err)


def test_duplicate_key() -> None:
    err = _error("name: x\nname: y\ncalls:\n  - {name: a}\n")
    assert err.line == 2 and "duplicate key 'name'" in str(err)


def test_duplicate_call_names() -> None:
    err = _error("name: x\ncalls:\n  - {name: a}\n  - {name: a}\n")
    assert err.key == "calls[1].name" and err.line == 4


def test_reserved_node_name() -> None:
    err = _error("name: x\nnodes: {censor: {}, b: {}}\ncalls:\n  - {name: a}\n")
    assert "built in" in str(err)


def test_bad_enum_lists_choices() -> None:
    err = _error("name: x\ncalls:\n  - name: a\n    media: [smell]\n")
    assert err.line == 4 and err.hint and "audio" in err.hint


def test_invalid_yaml() -> None:
    err = _error("name: [\n")
    assert "not valid YAML" in str(err)


def test_not_a_mapping() -> None:
    err = _error("- just\n- a list\n")
    assert "mapping" in str(err)


def test_empty_file() -> None:
    err = _error("")
    assert "empty" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert "no such file" in str(info.value)


def test_binary_file(tmp_path: Path) -> None:
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    assert "UTF-8" in str(info.value)


def test_discover_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError):
        discover([tmp_path])


@pytest.mark.parametrize(
    ("services", "clash"),
    [
        ("[{https: {port: 443}}, {quic: {port: 443}}]", False),  # TCP 443 and UDP 443
        ("[{quic: {port: 443}}, {turn: {port: 3478, tls_port: 443}}]", False),  # TURN's TLS port is TCP
        ("[{quic: {port: 443}}, {quic: {port: 443}}]", True),
        ("[{quic: {port: 3478}}, {turn: {port: 3478, tls_port: 5349}}]", True),  # TURN listens on UDP too
        ("[{https: {port: 443}}, {turn: {port: 3478, tls_port: 443}}]", True),
        ("[{iperf3: {port: 5201}}, {quic: {port: 5201}}]", True),  # iperf3 -u uses the same port
    ],
)
def test_service_ports_clash_per_transport(services: str, clash: bool) -> None:
    text = f"name: x\nnodes:\n  a: {{}}\n  b:\n    services: {services}\ncalls:\n  - {{name: c, from: a, to: b}}\n"
    if clash:
        assert "cannot share a port" in str(_error(text))
    else:
        spec = parse_scenario(text).nodes["b"]
        assert [s.kind for s in spec.services][0] in {"https", "quic"}
