"""testbed.tools.netcount: parsing /proc/net/snmp-style tables and differences."""

from __future__ import annotations

import json
import subprocess
import sys

from testbed.tools import netcount

SNMP = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1234
Tcp: RtoAlgorithm InSegs OutSegs
Tcp: 1 50 60
"""
NETSTAT = """\
TcpExt: SyncookiesSent
TcpExt: 0
IpExt: InNoRoutes InOctets OutOctets
IpExt: 0 99999 88888
"""


def test_parse_counters() -> None:
    c = netcount.parse_counters(SNMP + NETSTAT)
    assert c["Ip.InReceives"] == 1234
    assert c["Tcp.InSegs"] == 50
    assert c["IpExt.InOctets"] == 99999
    assert c["TcpExt.SyncookiesSent"] == 0


def test_parse_skips_mismatched_pairs_and_junk() -> None:
    assert netcount.parse_counters("Ip: A B\nTcp: 1 2\n") == {}
    assert netcount.parse_counters("Ip: A B\nIp: x 2\n") == {"Ip.B": 2}


def test_delta_keeps_changed_counters() -> None:
    assert netcount.delta({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 1}) == {"b": 3}


def test_cli_reads_this_namespace() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "testbed.tools.netcount", "--window", "0.05"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert doc["seconds"] >= 0.05
    assert isinstance(doc["delta"], dict)
