"""Settled flows leave the queue (core/offload.py, censor/conntrack.py) with real traffic.

A TCP download through an accept rule is offloaded to the kernel, and the censor's counters for
it still equal what the receiving node's kernel counted; a flow under a throttle or cut rule is
never offloaded. Bounds are counters, not times (a shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from test_policy_actions import HTTPS_NODES, curl, network, rule, udp

from testbed.tools.updown import Session

pytestmark = pytest.mark.netns

DOWNLOAD = 3_000_000
# Packets the caller's links carry besides the download (ARP, IPv6 neighbour/router messages):
# a few, of at most ~100 bytes each.
OTHER_PACKETS = 20
OTHER_BYTES = OTHER_PACKETS * 120


def rx_totals(s: Session, node: str) -> tuple[int, int]:
    """(packets, IP bytes) received on ``node``'s links other than lo, from its kernel."""
    links = json.loads(s.run(node, ["ip", "-j", "-s", "link", "show"], timeout=20).stdout)
    packets = nbytes = 0
    for link in links:
        if link["ifname"] == "lo":
            continue
        rx = link["stats64"]["rx"]
        packets += rx["packets"]
        nbytes += rx["bytes"] - 14 * rx["packets"]  # Ethernet headers are not IP bytes
    return packets, nbytes


def censor_pid(s: Session) -> int:
    for pid in s.pids("censor"):
        try:
            if b"testbed.censor.main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError("no censor process in the censor namespace")


def https_flows(censor: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in censor["flows"] if f["transport"] == "tcp" and f["responder"].endswith(":443")]


def test_an_accepted_download_is_offloaded_and_its_counts_stay_exact() -> None:
    accept = [{"name": "web", "match": {"transport": "tcp", "dst_port": 443}, "action": "accept"}]
    with network("offload-accept", accept, nodes=HTTPS_NODES) as s:
        before = rx_totals(s, "caller")
        code, _, out = curl(s, f"/bytes/{DOWNLOAD}", max_time=60)
        after = rx_totals(s, "caller")
    assert code == 0 and out.split()[:2] == ["200", str(DOWNLOAD)], out
    assert s.censor is not None
    offload = s.censor["offload"]
    assert offload["enabled"] is True and offload["offloaded_flows"] >= 1
    # Most of the download went by the kernel, not through the queue.
    assert offload["kernel_bytes"] > DOWNLOAD // 2, offload
    (flow,) = https_flows(s.censor)
    assert flow["settled"] is True
    got_packets, got_bytes = after[0] - before[0], after[1] - before[1]
    # The caller's kernel received the flow's reply packets plus a little link chatter.
    assert 0 <= got_packets - flow["packets_reply"] <= OTHER_PACKETS, (flow, got_packets)
    assert 0 <= got_bytes - flow["bytes_reply"] <= OTHER_BYTES, (flow, got_bytes)
    # The rule's counters include the kernel's packets, as they would without offload.
    r = rule(s, "web")
    assert r["packets"] == flow["packets_orig"] + flow["packets_reply"] == r["accepted"]
    assert r["bytes"] == flow["bytes_orig"] + flow["bytes_reply"]
    assert s.censor["packets"] >= r["packets"]


def test_offload_false_keeps_every_packet_in_the_queue() -> None:
    accept = [{"name": "allow", "match": {"transport": "udp", "dst_port": 9000}, "action": "accept"}]
    with network("offload-off", accept, offload=False) as s:
        _, rx = udp(s, 9000, count=300, rate=1000)
    assert rx["unique"] == 300
    assert s.censor is not None and s.censor["offload"] == {"enabled": False}
    assert rule(s, "allow")["accepted"] == 300


def test_an_accepted_udp_stream_counts_every_datagram_once() -> None:
    accept = [{"name": "allow", "match": {"transport": "udp", "dst_port": 9000}, "action": "accept"}]
    with network("offload-udp", accept) as s:
        _, rx = udp(s, 9000, count=2000, rate=2000)
    assert rx["unique"] == 2000 and rx["lost"] == 0
    assert s.censor is not None and s.censor["offload"]["offloaded_flows"] == 1
    assert s.censor["offload"]["kernel_packets"] > 0
    r = rule(s, "allow")
    assert r["packets"] == r["accepted"] == 2000 and r["matched_flows"] == 1


@pytest.mark.parametrize(
    "action",
    [{"throttle": {"rate": "20mbit", "burst": "64KB"}}, {"cut": {"after_bytes": "100MB"}}],
    ids=["throttle", "cut"],
)
def test_a_flow_a_rule_still_acts_on_is_not_offloaded(action: dict[str, Any]) -> None:
    rules = [{"name": "slow", "match": {"transport": "tcp", "dst_port": 443}, "action": action}]
    with network("offload-kept", rules, nodes=HTTPS_NODES) as s:
        code, _, out = curl(s, "/bytes/500000", max_time=60)
    assert code == 0 and out.split()[:2] == ["200", "500000"], out
    assert s.censor is not None
    assert s.censor["offload"]["offloaded_flows"] == 0 and s.censor["offload"]["kernel_packets"] == 0
    (flow,) = https_flows(s.censor)
    assert flow["settled"] is False
    r = rule(s, "slow")
    assert r["packets"] == flow["packets_orig"] + flow["packets_reply"]


def test_with_the_engine_stopped_a_new_flow_gets_nothing_through() -> None:
    """Fail closed stays true with offload on: only marked (settled) connections skip the queue."""
    accept = [{"name": "allow", "match": {"transport": "udp"}, "action": "accept"}]
    with network("offload-closed", accept) as s:
        _, first = udp(s, 9000, count=300, rate=1000)
        pid = censor_pid(s)
        os.kill(pid, signal.SIGSTOP)
        try:
            _, stopped = udp(s, 9001, count=50, rate=100)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert first["unique"] == 300
    assert stopped["unique"] == 0, stopped
    assert s.censor is not None and s.censor["offload"]["offloaded_flows"] >= 1
