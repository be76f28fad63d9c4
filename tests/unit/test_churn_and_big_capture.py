"""The issue-12 benchmark loads: the churn sender opens a new flow every N packets (loopback), and
bench_classify's large capture is readable, of the size asked, with every copy a new set of flows."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.analysis.classify import stream_flows
from testbed.analysis.pcap import read_capture, strip_link_layer
from testbed.core.flow import Flow
from testbed.core.packet import parse_ip

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "pcaps"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_churn_sends_per_flow_packets_from_fresh_ports() -> None:
    port = _free_udp_port()
    tool = [sys.executable, "-m", "testbed.tools.churn"]
    recv = subprocess.Popen([*tool, "recv", str(port), "--idle", "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None and json.loads(recv.stdout.readline()) == {"ready": port}
        out = subprocess.run([*tool, "send", "127.0.0.1", str(port), "--seconds", "0.3", "--per-flow", "3",
                              "--size", "50"], capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        sent = json.loads(out.stdout)
        got = json.loads(recv.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    assert sent["flows"] >= 64 and sent["packets"] == sent["flows"] * 3
    assert 0 < got["packets"] <= sent["packets"]


def test_churn_rejects_bad_options() -> None:
    out = subprocess.run([sys.executable, "-m", "testbed.tools.churn", "send", "127.0.0.1", "9", "--per-flow", "0"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "--per-flow must be >= 1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real captures not found at {SHARED}")
def test_big_capture_has_the_size_asked_and_new_flows_per_copy(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_classify import build_big_capture
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    one = sum(  # IP frames of the shared captures: one copy
        1
        for p in SHARED.glob("*.pcap*")
        if not p.name.endswith(".ndpi.out")
        for r in read_capture(str(p))
        if r.linktype == 1 and strip_link_layer(r.linktype, r.data) is not None
    )
    path = tmp_path / "big.pcap"
    assert build_big_capture(path, 2 * one + 5) == 2 * one + 5
    recs = list(read_capture(str(path)))
    assert len(recs) == 2 * one + 5
    assert all(b.timestamp >= a.timestamp for a, b in zip(recs, recs[1:], strict=False))
    first = parse_ip(strip_link_layer(1, recs[0].data) or b"")
    again = parse_ip(strip_link_layer(1, recs[one].data) or b"")
    assert (first.sport, first.dport, first.proto) == (again.sport, again.dport, again.proto)
    assert first.src != again.src and first.dst != again.dst  # the copy moved to its own addresses
    flows: list[Flow] = []
    path.unlink()
    build_big_capture(path, 2 * one)
    stream_flows(str(path), flows.append)
    single: list[Flow] = []
    build_big_capture(tmp_path / "one.pcap", one)
    stream_flows(str(tmp_path / "one.pcap"), single.append)
    assert len(flows) == 2 * len(single) > 100  # no copy's packets fell into another copy's flows
