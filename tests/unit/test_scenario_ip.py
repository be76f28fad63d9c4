"""The scenario's `ip:` key (issue 13) and what it allows: `{addr6:NODE}`, NAT only with IPv4."""

from __future__ import annotations

import pytest

from testbed.errors import ScenarioError
from testbed.net.topology import plan_topology
from testbed.probes import substitute
from testbed.scenario.loader import parse_scenario
from testbed.scenario.model import IpMode


def scenario(ip: str = "", nat: str = "", probe: str = "[ping, '{addr:callee}']") -> str:
    return (
        "name: ip\n"
        + (f"ip: {ip}\n" if ip else "")
        + "nodes:\n"
        + f"  caller: {{side: inside{', nat: ' + nat if nat else ''}}}\n"
        + "  callee: {}\n"
        + f"probes: [{{name: p, node: caller, run: {probe}}}]\n"
    )


def error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return info.value


def test_ip_defaults_to_dual_stack() -> None:
    assert parse_scenario(scenario()).ip is IpMode.DUAL
    assert parse_scenario(scenario("v4")).ip is IpMode.V4
    assert parse_scenario(scenario("v6")).ip is IpMode.V6
    assert (IpMode.V4.has_v4, IpMode.V4.has_v6, IpMode.V6.has_v4, IpMode.DUAL.has_v6) == (True, False, False, True)


def test_a_bad_ip_value_names_its_line_and_the_choices() -> None:
    err = error(scenario("ipv6"))
    assert str(err).startswith("s.yaml:2:") and err.key == "ip"
    for choice in ("v4", "v6", "dual"):
        assert choice in str(err)


def test_nat_in_a_v6_only_scenario_is_an_error_naming_the_fix() -> None:
    err = error(scenario("v6", nat="symmetric"))
    assert err.line == 4 and err.key == "nodes.caller.nat"
    assert "NAT is IPv4-only" in str(err) and "`ip: dual`" in str(err)
    assert parse_scenario(scenario("dual", nat="symmetric")).nodes["caller"].nat is not None


def test_addr6_is_an_error_under_v4_naming_the_ip_key() -> None:
    err = error(scenario("v4", probe="[ping, '{addr6:callee}']"))
    assert err.key == "probes[0].run[1]"
    assert "`ip: v4`" in str(err) and "set `ip: dual`" in str(err) and "{addr:callee}" in str(err)


def test_addr6_names_a_node_under_dual_and_v6() -> None:
    for ip in ("dual", "v6"):
        assert parse_scenario(scenario(ip, probe="[ping, '{addr6:callee}']")).probes[0].run[1] == "{addr6:callee}"
    err = error(scenario("dual", probe="[ping, '{addr6:ghost}']"))
    assert "{addr6:ghost} names no node" in str(err)


def test_addr6_renders_the_planned_ipv6_address() -> None:
    sc = parse_scenario(scenario("dual", probe="[ping, '-6', '[{addr6:callee}]:443', '{addr:callee}']"))
    plan = plan_topology(sc, "abc123")
    callee = plan.node("callee")
    assert callee.public_address6 is not None
    assert substitute("[{addr6:callee}]:443", plan, []) == f"[{callee.public_address6}]:443"
    assert substitute("{addr:callee}", plan, []) == callee.public_address


def test_a_scenario_with_nat_and_no_ip_key_is_ipv4_only() -> None:
    # Its NAT decides, as its author meant: under dual a direct call would go around it over IPv6.
    assert parse_scenario(scenario(nat="symmetric")).ip is IpMode.V4
    assert parse_scenario(scenario("dual", nat="symmetric")).ip is IpMode.DUAL
    assert parse_scenario(scenario()).ip is IpMode.DUAL
