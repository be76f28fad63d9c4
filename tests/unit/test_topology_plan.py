"""The pure half of the topology: names and addresses a scenario turns into."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from testbed.net import names
from testbed.net.nat import rules
from testbed.net.topology import SUPERNET, ULA, plan_topology, ula_prefix
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


# --- IPv6 (issue 13; the namespace side is not wired yet) ----------------------------------------

DUAL = parse_scenario(
    """
name: plan6
ip: dual
nodes:
  caller: {side: inside, nat: symmetric}
  callee: {}
  relay: {services: [turn]}
calls: [{name: c}]
"""
)


def test_v4_plans_have_no_ipv6_and_keep_every_v4_field() -> None:
    plan = plan_topology(SCENARIO, "abc123")
    assert plan.prefix6 is None and plan.addresses6() == []
    for link in plan.links:
        assert link.a_address6 is None and link.b_address6 is None
    v4 = [(ln.a_address, ln.b_address, ln.prefixlen) for ln in plan.links]
    assert v4 == [(ln.a_address, ln.b_address, ln.prefixlen) for ln in plan_topology(DUAL, "abc123").links]


def test_the_runs_ula_48_is_stable_per_run_id_distinct_across_ids_and_inside_fd00_8() -> None:
    assert ula_prefix("abc123") == ula_prefix("abc123")
    assert str(ula_prefix("abc123")) == plan_topology(DUAL, "abc123").prefix6
    prefixes = {ula_prefix(f"{i:06x}") for i in range(2000)}
    assert len(prefixes) == 2000  # 40 random bits: a collision among 2000 ids would be a bug
    for p in prefixes:
        assert p.prefixlen == 48 and p.subnet_of(ULA)
        assert str(p).startswith("fd")
    # Pinned: the derivation is documented (SHA-256 of "testbed-ula:<run id>"), so reports and
    # `testbed clean` can recompute it; changing it silently would break both.
    digest = hashlib.sha256(b"testbed-ula:abc123").digest()[:5]
    assert ula_prefix("abc123").network_address.packed[:6] == b"\xfd" + digest


def test_ipv6_addresses_one_64_per_link_censor_1_node_2_no_overlap() -> None:
    plan = plan_topology(DUAL, "abc123")
    prefix = ipaddress.IPv6Network(plan.prefix6 or "")
    subnets = []
    for link in plan.links:
        assert link.a_address6 is not None and link.b_address6 is not None and link.prefixlen6 == 64
        a, b = ipaddress.IPv6Address(link.a_address6), ipaddress.IPv6Address(link.b_address6)
        net = ipaddress.IPv6Network((a, 64), strict=False)
        assert b in net and net.subnet_of(prefix)
        subnets.append(net)
    assert len(subnets) == 4
    for i, x in enumerate(subnets):
        for y in subnets[i + 1 :]:
            assert not x.overlaps(y)
    # Mirrors 198.18.i.1 / .2: link i is subnet i, censor ::1, node (or its NAT) ::2.
    callee = plan.node("callee")
    assert callee.link_index == 2 and callee.address == "198.18.2.2"
    assert callee.censor_address6 == str(prefix.network_address + (2 << 64) + 1) == callee.gateway6
    assert callee.address6 == str(prefix.network_address + (2 << 64) + 2) == callee.public_address6
    assert plan.addresses6(Side.OUTSIDE) == [callee.address6, plan.node("relay").address6]


def test_a_nated_node_routes_ipv6_through_its_nat_without_nat66() -> None:
    plan = plan_topology(DUAL, "abc123")
    caller = plan.node("caller")
    assert caller.nat is not None
    base = ipaddress.IPv6Network(plan.prefix6 or "").network_address
    assert caller.nat.outer_address6 == str(base + (1 << 64) + 2)
    assert caller.nat.inner_address6 == str(base + (0x101 << 64) + 1) == caller.gateway6
    assert caller.address6 == str(base + (0x101 << 64) + 2)
    assert caller.public_address6 == caller.address6  # IPv6 is routed, not translated
    assert caller.public_address == caller.nat.outer_address != caller.address  # IPv4 is NATed as before


def test_plans_of_two_runs_share_no_ipv6_address() -> None:
    one, two = plan_topology(DUAL, "abc123"), plan_topology(DUAL, "def456")
    assert set(one.addresses6()).isdisjoint(two.addresses6())


def test_routes_v4_only_plan_is_the_supernet_via_each_gateway() -> None:
    plan = plan_topology(SCENARIO, "abc123")
    caller = plan.node("caller")
    assert caller.nat is not None
    assert {(r.netns, r.dst, r.gateway) for r in plan.routes} == {
        (caller.netns, "198.18.0.0/15", caller.gateway),
        (caller.nat.netns, "198.18.0.0/15", caller.censor_address),
        (plan.node("callee").netns, "198.18.0.0/15", "198.18.2.1"),
        (plan.node("relay").netns, "198.18.0.0/15", "198.18.3.1"),
    }
    assert plan.sysctls == ()  # an IPv4 run leaves the namespaces' IPv6 settings alone


def test_dual_routes_the_runs_48_via_each_v6_gateway_and_the_censor_reaches_behind_the_nat() -> None:
    plan = plan_topology(DUAL, "abc123")
    caller, callee = plan.node("caller"), plan.node("callee")
    assert caller.nat is not None
    v6 = {(r.netns, r.dst, r.gateway) for r in plan.routes if ":" in r.dst}
    inner = str(ipaddress.IPv6Network((caller.address6 or "", 64), strict=False))
    assert v6 == {
        (caller.netns, plan.prefix6, caller.nat.inner_address6),
        (caller.nat.netns, plan.prefix6, caller.censor_address6),
        # No NAT66: the censor needs a route to the node's own /64 behind the NAT.
        (plan.censor_netns, inner, caller.nat.outer_address6),
        (callee.netns, plan.prefix6, callee.censor_address6),
        (plan.node("relay").netns, plan.prefix6, plan.node("relay").censor_address6),
    }
    assert len([r for r in plan.routes if ":" not in r.dst]) == 4  # dual keeps every IPv4 route
    # Nothing is routed outside the run's own prefix (no default route, as in IPv4).
    for r in plan.routes:
        assert ipaddress.ip_network(r.dst).subnet_of(SUPERNET if ":" not in r.dst else ULA)  # type: ignore[arg-type]


def test_v6_only_plans_no_ipv4_route() -> None:
    v6 = parse_scenario("name: v6\nip: v6\nnodes: {caller: {side: inside}, callee: {}}\ncalls: [{name: c}]\n")
    plan = plan_topology(v6, "abc123")
    assert plan.routes and all(":" in r.dst for r in plan.routes)


def test_dual_sysctls_enable_ipv6_everywhere_and_forwarding_only_in_nat_namespaces() -> None:
    plan = plan_topology(DUAL, "abc123")
    caller = plan.node("caller")
    assert caller.nat is not None
    settings = dict(plan.sysctls)
    assert set(settings) == set(plan.all_netns)
    for ns, kv in settings.items():
        d = dict(kv)
        assert d["net.ipv6.conf.all.disable_ipv6"] == d["net.ipv6.conf.default.disable_ipv6"] == "0"
        # The censor turns its forwarding on together with its queue rules (testbed.censor.main),
        # never before: forwarding without the rule would pass traffic uninspected.
        assert d.get("net.ipv6.conf.all.forwarding") == ("1" if ns == caller.nat.netns else None), ns


def test_sysctl_writer_accepts_only_per_namespace_keys(tmp_path: Path) -> None:
    from testbed.net import sysctl

    assert sysctl.proc_path("net.ipv6.conf.all.forwarding") == Path("/proc/sys/net/ipv6/conf/all/forwarding")
    for bad in ("kernel.unprivileged_userns_clone", "net..x", "net.ipv6/../../kernel", "net"):
        with pytest.raises(ValueError, match="only net"):
            sysctl.proc_path(bad)
    assert sysctl.main(["net.ipv6.conf.all.forwarding"]) == 1  # no '=': refused, nothing written


def test_sysctl_writer_on_a_kernel_without_ipv6_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from testbed.net import sysctl

    (tmp_path / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "net" / "ipv4" / "ip_forward").write_text("0\n")
    monkeypatch.setattr(sysctl, "PROC_SYS", tmp_path)
    assert sysctl.main(["net.ipv4.ip_forward=1"]) == 0
    assert (tmp_path / "net" / "ipv4" / "ip_forward").read_text() == "1\n"
    assert sysctl.main(["net.ipv6.conf.all.disable_ipv6=0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IPv6 disabled" in err and "use `ip: v4`" in err
