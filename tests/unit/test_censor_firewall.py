"""The censor's queue rule as data: the same FORWARD NFQUEUE rule for iptables and ip6tables."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from testbed.censor import firewall
from testbed.core.policy_kinds import Family

TAIL = ["FORWARD", "-m", "comment", "--comment", "testbed:abc123", "-j", "NFQUEUE", "--queue-num", "3"]


def test_the_ipv6_rule_is_the_ipv4_rule_in_ip6tables() -> None:
    assert firewall.rule_argv("-A", 3, "abc123") == ["iptables", "-w", "5", "-A", *TAIL]
    assert firewall.rule_argv("-A", 3, "abc123", Family.V6) == ["ip6tables", "-w", "5", "-A", *TAIL]
    assert firewall.rule_argv("-D", 3, "abc123", Family.V6) == ["ip6tables", "-w", "5", "-D", *TAIL]
    # No --queue-bypass in either family: with nobody on the queue the kernel drops (fail closed).
    for family in Family:
        assert "--queue-bypass" not in firewall.rule_argv("-A", 3, "abc123", family)
    with pytest.raises(ValueError, match="-A or -D"):
        firewall.rule_argv("-I", 3, "abc123")


def test_queue_rules_defaults_to_the_ipv4_rule_only(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(firewall.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(firewall.subprocess, "run", fake_run)
    with firewall.queue_rules(3, tag="abc123"):
        assert ran == [["/usr/sbin/iptables", "-w", "5", "-A", *TAIL]]
    assert ran[1] == ["/usr/sbin/iptables", "-w", "5", "-D", *TAIL]
    assert len(ran) == 2  # an IPv4-only run installs nothing in ip6tables


def test_queue_rules_for_both_families_adds_and_removes_each(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(firewall.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(firewall.subprocess, "run", fake_run)
    with firewall.queue_rules(3, tag="abc123", families=(Family.V4, Family.V6)):
        assert ran == [["/usr/sbin/iptables", "-w", "5", "-A", *TAIL], ["/usr/sbin/ip6tables", "-w", "5", "-A", *TAIL]]
    assert ran[2:] == [["/usr/sbin/ip6tables", "-w", "5", "-D", *TAIL], ["/usr/sbin/iptables", "-w", "5", "-D", *TAIL]]


def test_a_failing_ip6tables_rule_still_removes_the_ipv4_one(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 1 if "ip6tables" in argv[0] else 0, "", "no NFQUEUE")

    monkeypatch.setattr(firewall.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(firewall.subprocess, "run", fake_run)
    with pytest.raises(firewall.FirewallError, match="^ip6tables -A"):
        with firewall.queue_rules(3, tag="abc123", families=(Family.V4, Family.V6)):
            pass
    assert ran[-1] == ["/usr/sbin/iptables", "-w", "5", "-D", *TAIL]


def test_a_failing_rule_names_the_tool_and_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "ip6tables: No chain/target/match by that name.")

    monkeypatch.setattr(firewall.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(firewall.subprocess, "run", fake_run)
    with pytest.raises(firewall.FirewallError, match=r"^ip6tables -A FORWARD .*load xt_NFQUEUE"):
        firewall._run(firewall.rule_argv("-A", 3, "abc123", Family.V6))
    monkeypatch.setattr(firewall.shutil, "which", lambda tool: None)
    with pytest.raises(firewall.FirewallError, match="ip6tables is not installed"):
        firewall._run(firewall.rule_argv("-A", 3, "abc123", Family.V6))
