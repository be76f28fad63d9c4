"""The real NFQUEUE path gives the same counts as the fake packet source (tests/unit/test_engine.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from testbed.censor.control import running_censor
from testbed.censor.policy_setup import policy_config
from testbed.net.names import new_run_id
from testbed.net.process import netns_process
from testbed.net.runs import registered_run
from testbed.net.topology import build_topology, plan_topology
from testbed.scenario.loader import parse_scenario

pytestmark = pytest.mark.netns

SCENARIO = parse_scenario("name: queue\ncalls:\n  - name: c\n")

RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 50000)); s.settimeout(10)
print("listening", flush=True)
n = 0
while n < int(sys.argv[1]):
    data, peer = s.recvfrom(2048)
    s.sendto(b"ack" + data[:10], peer)
    n += 1
print(n, flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000)); s.settimeout(10)
for i in range(int(sys.argv[2])):
    s.sendto(b"x" * 100, (sys.argv[1], 50000))
    s.recvfrom(2048)
print("done", flush=True)
"""


async def _exchange(count: int) -> dict:
    rid = new_run_id()
    plan = plan_topology(SCENARIO, rid)
    with registered_run(rid) as workdir:
        async with build_topology(plan) as topo:
            assert all(not any(v.values()) for v in topo.offloads.values()), topo.offloads
            policy = policy_config(SCENARIO, plan, Path("."))
            async with running_censor(plan, SCENARIO.censor, workdir, seed=0, policy=policy) as censor:
                callee, caller = plan.node("callee"), plan.node("caller")
                async with netns_process(
                    callee.netns, [sys.executable, "-c", RECEIVER, str(count)], stdout=asyncio.subprocess.PIPE
                ) as rx:
                    assert rx.stdout is not None
                    assert (await asyncio.wait_for(rx.stdout.readline(), 10)).strip() == b"listening"
                    async with netns_process(
                        caller.netns,
                        [sys.executable, "-c", SENDER, callee.address, str(count)],
                        stdout=asyncio.subprocess.PIPE,
                    ) as tx:
                        out, _ = await asyncio.wait_for(tx.communicate(), 30)
                        assert out.strip() == b"done"
                    await asyncio.wait_for(rx.wait(), 10)
                return await censor.stop()


def test_real_queue_counts_every_packet(unchanged_host: dict[str, str]) -> None:
    summary = asyncio.run(_exchange(50))
    udp = [f for f in summary["flows"] if f["transport"] == "udp" and f["endpoints"][1].endswith(":50000")]
    assert len(udp) == 1, summary["flows"]
    (flow,) = udp
    assert flow["initiator"] == "198.18.1.2:40000"
    assert (flow["packets_orig"], flow["packets_reply"]) == (50, 50)
    assert flow["bytes_orig"] == 50 * (20 + 8 + 100)
    assert flow["bytes_reply"] == 50 * (20 + 8 + 13)
    assert flow["verdicts"] == {"accept": 100}
    assert summary["kernel"]["queue_dropped"] == 0
