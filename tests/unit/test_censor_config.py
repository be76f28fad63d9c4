"""The censor's config: one typed record written by the runner and read by the censor process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.censor import main as censor_main
from testbed.censor.config import CensorConfig, CensorConfigError, PolicyConfig, build_policy
from testbed.censor.policy_setup import policy_config
from testbed.net.topology import plan_topology
from testbed.scenario.loader import parse_scenario

SCENARIO = """\
name: cfg
nodes:
  caller: {side: inside}
  relay: {side: outside}
probes: [{name: p, node: caller, run: ["true"]}]
censor:
  inspect_packets: 7
  lists:
    relays: [relay, 91.108.4.0/22]
    extra: {file: extra.txt}
  rules:
    - {name: sni, match: {sni: {suffix: [twitter.com]}, initiator: inside}, action: {reject: rewrite, block_after: 75s}}
    - {name: relays, match: {dst: {list: relays}}, action: drop}
"""


def _config(tmp_path: Path) -> CensorConfig:
    (tmp_path / "extra.txt").write_text("# comment\n203.0.113.0/24\n")
    scenario = parse_scenario(SCENARIO, "s.yaml")
    plan = plan_topology(scenario, "000000")
    return CensorConfig(
        policy=policy_config(scenario, plan, tmp_path),
        run_id=plan.run_id,
        seed=5,
        final_path=str(tmp_path / "censor-final.json"),
        queue_num=0,
        max_len=scenario.censor.queue_max_len,
        inspect_packets=scenario.censor.inspect_packets,
        max_flows=scenario.censor.max_flows,
        reassemble_tls=scenario.censor.reassemble_tls,
    )


def test_the_config_round_trips_and_compiles_on_the_censor_side(tmp_path: Path) -> None:
    config = _config(tmp_path)
    back = CensorConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert back == config
    assert back.inspect_packets == 7 and back.seed == 5
    policy, lists = build_policy(back.policy, seed=back.seed, start=0.0)
    assert [r.name for r in policy.rules] == ["sni", "relays"]
    assert set(lists) == {"relays", "extra"} and len(lists["extra"]) == 1
    relay = dict(back.policy.nodes)["relay"]
    assert len(relay) == 1 and relay == config.policy.nodes["relay"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("seed"), "censor config: missing key 'seed'"),
        (lambda d: d.update(max_len="10"), "censor config.max_len: expected int"),
        (lambda d: d.update(reassemble_tls=1), "censor config.reassemble_tls: expected bool"),
        (lambda d: d["policy"].update(inside="10.0.0.1"), "policy.inside: expected an array of strings"),
        (lambda d: d["policy"]["ir"]["rules"][0].pop("action"), "policy.ir: policy.rules[0]: missing key 'action'"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, change: object, message: str) -> None:
    data = _config(tmp_path).to_json()
    change(data)  # type: ignore[operator]
    with pytest.raises(CensorConfigError) as err:
        CensorConfig.from_json(data)
    assert str(err.value).startswith(message)


def test_the_censor_process_refuses_a_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "censor.json"
    path.write_text(json.dumps({"run_id": "x"}))
    assert censor_main.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing key" in err and "Traceback" not in err
    assert censor_main.main([str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err


def test_the_censor_process_does_not_load_the_scenario_schema() -> None:
    # It gets the policy as the core's IR: no pydantic, no scenario models in the hot process.
    code = (
        "import sys, testbed.censor.main; "
        "print(sorted(m for m in sys.modules if m.startswith(('testbed.scenario', 'pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_policy_config_is_what_running_censor_takes() -> None:
    # The runner hands policy_config's record through unchanged (no dict in between).
    import inspect

    from testbed.censor.control import running_censor

    assert inspect.signature(running_censor).parameters["policy"].annotation in ("PolicyConfig", PolicyConfig)


def test_a_dual_run_names_nodes_by_both_addresses_and_asks_for_ip6tables(tmp_path: Path) -> None:
    (tmp_path / "extra.txt").write_text("203.0.113.0/24\n")
    scenario = parse_scenario(SCENARIO.replace("name: cfg\n", "name: cfg\nip: dual\n"), "s.yaml")
    plan = plan_topology(scenario, "000000")
    policy = policy_config(scenario, plan, tmp_path)
    relay = plan.node("relay")
    assert policy.nodes["relay"] == (relay.public_address, relay.public_address6)
    assert set(policy.inside) == {plan.node("caller").public_address, plan.node("caller").public_address6}
    config = CensorConfig(
        policy=policy, run_id="000000", seed=0, final_path="f", queue_num=0, max_len=1,
        inspect_packets=1, max_flows=1, reassemble_tls=False, ipv6=plan.ip.has_v6,
    )  # fmt: skip
    back = CensorConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert back.ipv6 is True and back == config
    # The compiled policy takes the IPv6 addresses of a named node into its list.
    _, lists = build_policy(back.policy, seed=0, start=0.0)
    assert len(lists["relays"]) == 3
