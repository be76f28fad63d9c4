"""The pure half of the topology: names and addresses a scenario turns into."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from testbed.net import names
from testbed.net.nat import rules
from testbed.net.topology import SUPERNET, plan_topology
from testbed.scenario.loader import parse_scenario
from testbed.scenario.model import NatType, Side

SCENARIO = parse_scenario(
    """
name: plan
nodes:
  caller: {side: inside, nat: symmetric}
  callee: {}
  relay: {services: [turn]}
calls: [{name: c}]
"""
)


def test_names_fit_ifnamsiz_and_carry_the_run_id() -> None:
    plan = plan_topology(SCENARIO, "abc123")
    assert plan.censor_netns == "tb-abc123-censor"
    for link in plan.links:
        for ns, ifname in ((link.a_netns, link.a_ifname), (link.b_netns, link.b_ifname)):
            assert len(ifname) <= 15
            assert names.IFNAME_RE.match(ifname), ifname
            m = names.NETNS_RE.match(ns)
            assert m and m["rid"] == "abc123", ns


def test_addresses_stay_in_the_benchmarking_range_and_are_unique() -> None:
    plan = plan_topology(SCENARIO, "abc123")
    seen = set()
    for link in plan.links:
        for addr in (link.a_address, link.b_address):
            assert ipaddress.ip_address(addr) in SUPERNET
            assert addr not in seen
            seen.add(addr)


def test_nat_node_sits_behind_its_own_namespace() -> None:
    plan = plan_topology(SCENARIO, "abc123")
    caller = plan.node("caller")
    assert caller.nat is not None and caller.nat.type is NatType.SYMMETRIC
    assert caller.nat.netns == "tb-abc123-caller-nat"
    assert caller.address == "198.19.1.2" and caller.public_address == "198.18.1.2"
    assert caller.gateway == caller.nat.inner_address
    assert len(plan.links) == 4  # caller-nat, nat-censor, callee-censor, relay-censor
    assert plan.addresses(Side.INSIDE) == ["198.18.1.2"]
    assert set(plan.addresses(Side.OUTSIDE)) == {"198.18.2.2", "198.18.3.2"}


def test_nat_rules_per_rfc4787_type() -> None:
    sym = rules("symmetric", "o1", "198.18.1.2", "198.19.1.2")
    assert sym == [
        ["-t", "nat", "-A", "POSTROUTING", "-o", "o1", "-j", "SNAT", "--to-source", "198.18.1.2", "--random-fully"]
    ]
    assert len(rules("port-restricted", "o1", "198.18.1.2", "198.19.1.2")) == 1
    eif = rules("endpoint-independent", "o1", "198.18.1.2", "198.19.1.2")
    assert eif[1][-2:] == ["--to-destination", "198.19.1.2"]


def test_netns_pattern_accepts_nat_namespaces_only_with_run_ids() -> None:
    assert names.NETNS_RE.match("tb-abc123-caller-nat")
    assert not names.NETNS_RE.match("tb-xyz-caller")
    assert not names.NETNS_RE.match("other-abc123-caller")


def test_a_taken_run_id_is_a_clear_error_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.errors import RunError
    from testbed.net import names, runs

    monkeypatch.setattr(names, "RUN_ROOT", tmp_path)
    (tmp_path / "abc123").mkdir()
    with pytest.raises(RunError, match="taken by another run"), runs.registered_run("abc123"):
        pass
    assert (tmp_path / "abc123").exists()  # the other run's directory is left alone


def test_new_run_ids_skip_existing_run_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.net import names

    monkeypatch.setattr(names, "RUN_ROOT", tmp_path)
    drawn = iter(["aaaaaa", "bbbbbb"])
    monkeypatch.setattr(names.secrets, "token_hex", lambda n: next(drawn))
    (tmp_path / "aaaaaa").mkdir()
    assert names.new_run_id() == "bbbbbb"
