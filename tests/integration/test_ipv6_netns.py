"""IPv6 in real namespaces: ping and curl over v6 through the censor, reject over v6, the two
ipv6-* scenarios, and a killed dual-stack run that `testbed clean` leaves no trace of
(``unchanged_host`` compares the host's ``ip -6 route``, ``ip -6 addr`` and ``ip6tables-save``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from testbed.net import names

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "testbed.cli"]

PROBES = """\
name: v6-probes
ip: dual
nodes:
  caller: {side: inside}
  natted: {side: inside, nat: port-restricted}
  server:
    services: [{https: {names: [vps.example.net]}}, {quic: {names: [vps.example.net]}}]
censor:
  rules:
    - name: v6-icmp
      match: {family: v6, transport: icmp}
      action: accept
    - name: v6-web
      match: {family: v6, transport: tcp, dst_port: 443}
      action: accept
    - name: v4-icmp
      match: {family: v4, transport: icmp}
      action: accept
probes:
  - name: ping6
    node: caller
    run: [ping, -6, -c, "2", -W, "5", "{addr6:server}"]
  - name: ping6-behind-nat
    node: natted
    run: [ping, -6, -c, "2", -W, "5", "{addr6:server}"]
  - name: curl6
    node: caller
    run: [curl, -6, -sS, --max-time, "20", --cacert, "{cert:server}", --resolve,
          "vps.example.net:443:{addr6:server}", "https://vps.example.net/bytes/3000", -o, /dev/null,
          -w, "%{{remote_ip}}"]
  - name: http3-6
    node: caller
    run: ["{python}", -m, testbed.tools.quicget, --timeout, "20", --cacert, "{cert:server}", --sni, vps.example.net,
          -o, /dev/null, "https://[{addr6:server}]/bytes/3000"]
  - name: ping4
    node: caller
    run: [ping, -4, -c, "2", -W, "5", "{addr:server}"]
"""

REJECT = """\
name: v6-reject
ip: dual
nodes:
  caller: {side: inside}
  server:
    services: [{https: {names: [vps.example.net]}}]
censor:
  rules:
    - name: reset-v6
      match: {family: v6, transport: tcp, dst_port: 443}
      action: {reject: {with: rst, to: client}}
    - name: unreachable-v6
      match: {family: v6, transport: tcp, dst_port: 8443}
      action: {reject: {with: icmp, icmp: admin}}
probes:
  - name: curl6-reset
    node: caller
    run: [curl, -6, -sS, -k, -o, /dev/null, --max-time, "20", "https://[{addr6:server}]/"]
    expect: {exit: 7}
  - name: connect6-unreachable
    node: caller
    run: ["{python}", -c, "import socket; s = socket.socket(socket.AF_INET6); s.settimeout(20);
          s.connect(('{addr6:server}', 8443))"]
    expect: {exit: nonzero}
  - name: curl4-passes
    node: caller
    run: [curl, -4, -sS, -k, -o, /dev/null, --max-time, "20", "https://{addr:server}/"]
"""

V6_ONLY = """\
name: v6-only
ip: v6
nodes:
  caller: {side: inside}
  callee: {side: outside}
  server:
    services: [{https: {names: [vps.example.net]}}]
calls:
  - name: c
    duration: 3s
    connect_timeout: 15s
probes:
  - name: curl6
    node: caller
    run: [curl, -sS, -k, -o, /dev/null, --max-time, "20", "https://[{addr6:server}]/"]
  - name: no-v4
    node: caller
    run: [sh, -c, "ip -4 addr show scope global | grep -q inet && exit 1; exit 0"]
expect:
  - call: c
    outcome: ok
    candidate: {family: v6}
"""


def _run(path: Path, out: Path, timeout: int = 180) -> dict[str, Any]:
    proc = subprocess.run([*CLI, "run", str(path), "--json", str(out)], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(out.read_text())
    (sc,) = doc["scenarios"]
    assert sc["error"] is None, sc["error"]
    return dict(sc)


def _rule_flows(sc: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in sc["censor"]["flows"] if rule in (f.get("rules") or {})]


def test_ping_and_curl_over_ipv6_cross_the_censor(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    (tmp_path / "s.yaml").write_text(PROBES)
    sc = _run(tmp_path / "s.yaml", tmp_path / "out.json")
    probes = {p["name"]: p for p in sc["probes"]}
    for name in ("ping6", "ping6-behind-nat", "curl6", "http3-6", "ping4"):
        assert probes[name]["exit_code"] == 0, probes[name]
    assert ":" in probes["curl6"]["stdout_tail"]  # curl's %{remote_ip}: it went over IPv6
    # The censor saw the IPv6 flows and its family: v6 rules counted them (the node behind the
    # NAT keeps its own IPv6 address: no NAT66, routed through its NAT and the censor).
    v6_icmp = _rule_flows(sc, "v6-icmp")
    assert len(v6_icmp) == 2 and all(f["transport"] == "icmpv6" and f["packets"] >= 4 for f in v6_icmp)
    (web,) = _rule_flows(sc, "v6-web")
    assert web["transport"] == "tcp" and web["bytes_reply"] > 3000
    (quic,) = [f for f in sc["censor"]["flows"] if f["transport"] == "udp" and f["responder"].endswith("]:443")]
    assert "quic" in quic["labels"] and quic["sni"] == "vps.example.net"  # the DPI reads QUIC over IPv6 too
    # family: v4 left the IPv6 pings alone and took the IPv4 one.
    (v4,) = _rule_flows(sc, "v4-icmp")
    assert v4["transport"] == "icmp"
    assert sc["passed"] is True


def test_reject_over_ipv6_sends_an_rst_or_an_icmpv6_unreachable(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    (tmp_path / "s.yaml").write_text(REJECT)
    sc = _run(tmp_path / "s.yaml", tmp_path / "out.json")
    probes = {p["name"]: p for p in sc["probes"]}
    # curl exit 7: connection refused, i.e. the RST the censor crafted over IPv6 reached it
    # (a drop would have been exit 28, a timeout).
    assert probes["curl6-reset"]["exit_code"] == 7, probes["curl6-reset"]
    assert probes["curl4-passes"]["exit_code"] == 0
    # ICMPv6 destination unreachable, code 1 (administratively prohibited, RFC 4443 3.1), crafted
    # by the censor: Linux turns it into EACCES on the connecting socket (a drop would time out,
    # the server's own RST would be ECONNREFUSED: nothing listens on 8443).
    assert "PermissionError" in probes["connect6-unreachable"]["stderr_tail"], probes["connect6-unreachable"]
    assert sc["censor"]["injected"] >= 2 and sc["censor"]["inject_errors"] == 0
    (flow,) = _rule_flows(sc, "reset-v6")
    assert flow["verdicts"].get("reject", 0) >= 1
    assert sc["passed"] is True


def test_a_call_blocked_over_ipv4_only_survives_over_ipv6(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    sc = _run(REPO / "scenarios" / "ipv6-v4-only-censor.yaml", tmp_path / "out.json")
    (call,) = sc["calls"]
    assert call["outcome"] == "ok" and call["candidate_family"] == "v6"
    assert call["selected_candidate_pair"]["family"] == "v6"
    assert ":" in call["selected_candidate_pair"]["remote_address"]
    stun_v4 = _rule_flows(sc, "drop-stun-v4")
    assert stun_v4 and all("." in f["initiator"] for f in stun_v4)
    assert sum(f["verdicts"].get("drop", 0) for f in stun_v4) >= 1
    assert sc["passed"] is True


def test_a_censor_covering_both_families_blocks_the_call(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    sc = _run(REPO / "scenarios" / "ipv6-both-families-censor.yaml", tmp_path / "out.json")
    (call,) = sc["calls"]
    assert call["connected"] is False and call["outcome"] == "blocked"
    for rule in ("drop-stun-v4", "drop-stun-v6"):
        flows = _rule_flows(sc, rule)
        assert sum(f["verdicts"].get("drop", 0) for f in flows) >= 1, rule
    assert sc["passed"] is True


def test_a_v6_only_network_carries_calls_and_probes(tmp_path: Path, unchanged_host: dict[str, str]) -> None:
    (tmp_path / "s.yaml").write_text(V6_ONLY)
    sc = _run(tmp_path / "s.yaml", tmp_path / "out.json")
    probes = {p["name"]: p for p in sc["probes"]}
    assert probes["no-v4"]["exit_code"] == 0  # `ip: v6` configures no IPv4 address
    assert probes["curl6"]["exit_code"] == 0
    (call,) = sc["calls"]
    assert call["outcome"] == "ok" and call["candidate_family"] == "v6"
    assert sc["passed"] is True


def test_a_killed_dual_stack_run_then_clean_leaves_no_ipv6_trace(
    tmp_path: Path, unchanged_host: dict[str, str]
) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: v6-long\nip: dual\nprobes:\n  - {name: wait, node: caller, run: [sleep, '60'], timeout: 90s}\n"
    )
    proc = subprocess.Popen(
        [*CLI, "run", str(tmp_path / "s.yaml"), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        censor_ns = None
        deadline = time.monotonic() + 60
        while censor_ns is None and time.monotonic() < deadline:
            for owner in names.RUN_ROOT.glob("*/owner.json"):
                try:
                    if json.loads(owner.read_text()).get("pid") == proc.pid:
                        ns = names.netns_name(owner.parent.name, "censor")
                        # Ready: the censor installed its ip6tables rule (the run is well under way).
                        rules = subprocess.run(
                            ["ip", "netns", "exec", ns, "ip6tables-save"], capture_output=True, text=True
                        ).stdout
                        if "NFQUEUE" in rules:
                            censor_ns = ns
                except (OSError, ValueError):
                    continue
            time.sleep(0.2)
        assert censor_ns is not None, "the dual-stack run never installed its ip6tables queue rule"
        v6 = subprocess.run(["ip", "-n", censor_ns, "-6", "addr"], capture_output=True, text=True).stdout
        assert "scope global nodad" in v6
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert os.path.exists(f"/run/netns/{censor_ns}")  # a SIGKILLed run cannot clean up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        clean = subprocess.run([*CLI, "clean"], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert not os.path.exists(f"/run/netns/{censor_ns}")
