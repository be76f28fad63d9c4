"""Every policy action with real traffic through ``testbed up`` / ``exec`` / ``down``.

Each test brings a small network up (caller inside, server outside, the censor between), sends
traffic with a real tool (udpseq, ping, curl), and checks both what the tool saw and the
censor's per-rule counters from ``testbed down --json``. Bounds are loose on purpose (a shared
2-core machine); benchmarks/fidelity.py measures the same actions precisely.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.tools.updown import Session, session

pytestmark = pytest.mark.netns

PY = sys.executable
NODES: dict[str, Any] = {"caller": {"side": "inside"}, "server": {"side": "outside"}}
HTTPS_NODES: dict[str, Any] = {
    "caller": {"side": "inside"},
    "server": {"side": "outside", "services": [{"https": {"names": ["site.example"]}}]},
}
NOOP = [{"name": "noop", "node": "caller", "run": ["true"]}]  # `up` runs no probes; the schema wants one


def _netns_of(run_id: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(f"tb-{run_id}-")]


@contextlib.contextmanager
def network(
    name: str, rules: list[dict[str, Any]], *, nodes: dict[str, Any] | None = None, **censor: Any
) -> Iterator[Session]:
    scenario = {"name": name, "nodes": nodes or NODES, "censor": {"rules": rules, **censor}, "probes": NOOP}
    with session(scenario) as s:
        assert _netns_of(s.run_id), "testbed up left no namespaces to work in"
        yield s
    # `down` removed everything this run created.
    assert _netns_of(s.run_id) == []
    assert s.censor is not None, "testbed down wrote no censor counters"


def rule(s: Session, name: str) -> dict[str, Any]:
    assert s.censor is not None
    return next(r for r in s.censor["rules"] if r["name"] == name)


def udp(
    s: Session, port: int, *, count: int, rate: float, size: int = 64, idle: float = 1.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """udpseq from caller to server: (sender's report, receiver's report). The sender starts
    once the receiver has printed its ready line (its socket is bound)."""
    rx = s.popen("server", [PY, "-m", "testbed.tools.udpseq", "recv", str(port), "--count", str(count),
                            "--idle", str(idle), "--timeout", str(count / rate + 20)])  # fmt: skip
    assert rx.stdout is not None
    assert rx.stdout.readline().startswith('{"ready"')
    tx = s.run("caller", [PY, "-m", "testbed.tools.udpseq", "send", s.address("server"), str(port), "--count", str(count),
                          "--rate", str(rate), "--size", str(size)], timeout=count / rate + 20)  # fmt: skip
    try:
        # It stops by itself `idle` s after the last datagram; if none ever came, ask it to report.
        out, _ = rx.communicate(timeout=idle + 1.0)
    except subprocess.TimeoutExpired:
        rx.terminate()
        out, _ = rx.communicate(timeout=10)
    return json.loads(tx.stdout), json.loads(out.strip().splitlines()[-1])


def curl(s: Session, path: str, *, max_time: float = 10, port: int = 443) -> tuple[int, float, str]:
    """(exit code, seconds, curl's -w report) for an HTTPS fetch from caller to server."""
    started = time.monotonic()
    p = s.run("caller", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
                         "--max-time", str(max_time), "--cacert", s.cert("server", port), "--resolve",
                         f"site.example:{port}:{s.address('server')}", f"https://site.example:{port}{path}"],
              timeout=max_time + 20, check=False)  # fmt: skip
    return p.returncode, time.monotonic() - started, p.stdout + p.stderr


def ping(
    s: Session, *, count: int, interval: float, size: int = 56, to: str = "server", wait: float = 2
) -> dict[int, float]:
    """icmp_seq -> RTT ms, in the order the replies arrived (dicts keep insertion order)."""
    p = s.run("caller", ["ping", "-n", "-c", str(count), "-i", str(interval), "-s", str(size), "-W", str(wait), s.address(to)],
              timeout=count * interval + wait + 20, check=False)  # fmt: skip
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"icmp_seq=(\d+) .*time=([0-9.]+) ms", p.stdout)}


# -- accept, drop, reject ----------------------------------------------------------------------------


def test_accept_lets_everything_through_and_settles_the_flow() -> None:
    with network(
        "act-accept", [{"name": "allow", "match": {"transport": "udp", "dst_port": 9000}, "action": "accept"}]
    ) as s:
        tx, rx = udp(s, 9000, count=500, rate=1000)
    assert rx["unique"] == 500 and rx["lost"] == 0 and rx["duplicates"] == 0
    r = rule(s, "allow")
    assert r["matched_flows"] == 1 and r["accepted"] == 500 and r["dropped"] == 0
    assert s.censor is not None and s.censor["settled"]["flows"] >= 1  # accepted for good: offloadable


def test_drop_is_silent_and_selective() -> None:
    with network(
        "act-drop", [{"name": "drop-udp", "match": {"transport": "udp", "dst_port": 9000}, "action": "drop"}]
    ) as s:
        tx, rx = udp(s, 9000, count=300, rate=1000, idle=0.5)
        replies = ping(s, count=3, interval=0.2)  # other traffic to the same server is untouched
    assert rx["unique"] == 0 and tx["send_errors"] == 0  # silent: no ICMP error came back
    assert len(replies) == 3
    r = rule(s, "drop-udp")
    assert r["dropped"] == 300 and r["drops"] == {"drop": 300} and r["accepted"] == 0


def test_reject_tcp_with_rst_fails_fast() -> None:
    rules = [{"name": "rst", "match": {"transport": "tcp", "dst_port": 443}, "action": "reject"}]
    with network("act-reject-rst", rules, nodes=HTTPS_NODES) as s:
        code, _, out = curl(s, "/", max_time=8)
    # The SYN is answered with an RST: "Connection refused" (curl exit 7) at once, not a timeout.
    assert code == 7, out  # refused (7), not a timeout (28): the RST came back
    r = rule(s, "rst")
    assert r["rejected"] >= 1 and r["drops"].get("reject", 0) >= 1
    assert s.censor is not None and s.censor["injected"] >= 1 and s.censor["inject_errors"] == 0


def test_reject_with_icmp_reaches_the_sender() -> None:
    rules = [
        {
            "name": "icmp-port",
            "match": {"transport": "udp", "dst_port": 9000},
            "action": {"reject": {"with": "icmp", "icmp": "port"}},
        },
        {
            "name": "icmp-admin",
            "match": {"transport": "tcp", "dst_port": 443},
            "action": {"reject": {"with": "icmp", "icmp": "admin"}},
        },
    ]
    with network("act-reject-icmp", rules, nodes=HTTPS_NODES) as s:
        before = s.snmp("caller")
        tx, rx = udp(s, 9000, count=50, rate=100, idle=0.5)
        after = s.snmp("caller")
        code, _, out = curl(s, "/", max_time=8)
    assert rx["unique"] == 0
    # Port unreachable makes the connected UDP socket's next send fail with ECONNREFUSED (and
    # that datagram is not sent): every datagram that left was answered by one ICMP error.
    unreachables = after["Icmp.InDestUnreachs"] - before["Icmp.InDestUnreachs"]
    assert tx["send_errors"] >= 10
    assert unreachables == 50 - tx["send_errors"]
    # Admin-prohibited turns curl's connect into an immediate failure (EHOSTUNREACH), exit 7.
    assert code == 7, out
    assert rule(s, "icmp-port")["rejected"] == unreachables
    assert rule(s, "icmp-admin")["rejected"] >= 1
    assert s.censor is not None and s.censor["injected"] >= unreachables + 1


# -- throttle --------------------------------------------------------------------------------------


def test_throttle_police_drops_the_excess() -> None:
    rules = [{"name": "police", "match": {"transport": "udp", "dst_port": 9000},
              "action": {"throttle": {"rate": "1Mbit", "burst": 5000, "mode": "police"}}}]  # fmt: skip
    with network("act-police", rules) as s:
        # 1028-byte IP packets at 250/s: 2.06 Mbit/s offered, twice the rate, for 3 s.
        tx, rx = udp(s, 9000, count=750, rate=250, size=1000)
    # The policer's own counters are exact; the receiver's rate only needs to show the policing
    # (a loaded machine delays the sender and makes its bursts uneven: generous bounds).
    assert 0.6e6 < rx["rate_ip_bps"] < 1.3e6, rx
    r = rule(s, "police")
    assert r["drops"]["policed"] == 750 - rx["unique"]
    assert r["accepted"] == rx["unique"] and r["delayed"] == 0


def test_throttle_shape_delays_instead_of_dropping() -> None:
    rules = [{"name": "shape", "match": {"transport": "tcp", "dst_port": 443},
              "action": {"throttle": {"rate": "1Mbit", "burst": 3000, "mode": "shape"}, "direction": "reply"}}]  # fmt: skip
    with network("act-shape", rules, nodes=HTTPS_NODES) as s:
        code, took, out = curl(s, "/bytes/300000", max_time=20)
    assert code == 0, out
    status, size, speed = out.split()[:3]
    assert status == "200" and int(size) == 300_000
    # Payload goodput under a 1 Mbit/s IP-level shaper: at most 1448/1500 of it.
    # The upper bound is the shaper's; a loaded machine can only make it slower.
    assert float(speed) * 8 < 1.0e6, out
    assert took > 2.0
    r = rule(s, "shape")
    assert r["delayed"] > 50 and r["max_hold_s"] > 0.05


# -- delay -----------------------------------------------------------------------------------------


def test_delay_adds_time_and_keeps_order() -> None:
    rules = [
        {"name": "fixed", "match": {"transport": "icmp", "size": {"min": 600, "max": 700}}, "action": {"delay": "100ms"}},
        {"name": "jitter", "match": {"transport": "icmp", "size": {"min": 1000, "max": 1100}},
         "action": {"delay": {"time": "30ms", "jitter": "25ms"}}},
    ]  # fmt: skip
    with network("act-delay", rules) as s:
        fixed = ping(s, count=20, interval=0.05, size=600)
        jitter = ping(s, count=60, interval=0.005, size=1000)  # 5 ms apart: jitter would reorder
    assert len(fixed) == 20
    # Never early; the upper bound only has to tell 100 ms from 200 ms on a loaded machine
    # (benchmarks/fidelity.py measures how late, precisely).
    assert all(100.0 <= rtt < 190.0 for rtt in fixed.values()), fixed
    # No reordering unless the rule asks for it: replies come back in sequence.
    seqs = list(jitter)
    assert len(seqs) == 60 and seqs == sorted(seqs)
    assert max(jitter.values()) > 40.0  # the jitter was really there
    f = rule(s, "fixed")
    assert f["delayed"] == 20 and 0.099 < f["max_hold_s"] < 0.2
    assert rule(s, "jitter")["delayed"] >= 50


def test_delay_adds_the_configured_time() -> None:
    # How *late* held packets leave (sub-millisecond since the censor's loop runs on select(2))
    # is a timing figure: benchmarks/fidelity.py measures it. Here: the delay is applied to every
    # matching packet, never early, and only to them.
    rules = [
        {"name": "fixed", "match": {"transport": "icmp", "size": {"min": 600, "max": 700}}, "action": {"delay": "20ms"}}
    ]
    with network("act-delay-late", rules) as s:
        base = ping(s, count=100, interval=0.01)
        held = ping(s, count=200, interval=0.01, size=600)
    assert len(base) == 100 and len(held) == 200
    assert min(held.values()) >= 20.0, "a held packet left early"
    added = sum(held.values()) / len(held) - sum(base.values()) / len(base)
    assert 19.0 <= added < 60.0, f"mean added delay {added:.3f} ms for a 20 ms delay"
    assert rule(s, "fixed")["delayed"] == 200


# -- loss ------------------------------------------------------------------------------------------


def test_loss_bernoulli() -> None:
    rules = [{"name": "loss10", "match": {"transport": "udp", "dst_port": 9000}, "action": {"loss": "10%"}}]
    with network("act-loss", rules) as s:
        tx, rx = udp(s, 9000, count=3000, rate=3000)
    # 10 % of 3000: the binomial 99.9 % interval is about +-1.8 points.
    assert 0.075 < rx["loss_rate"] < 0.125, rx
    assert rx["reordered"] == 0
    r = rule(s, "loss10")
    assert r["drops"] == {"loss": rx["lost"]}


def test_loss_gilbert_elliott_comes_in_bursts() -> None:
    rules = [{"name": "ge", "match": {"transport": "udp", "dst_port": 9000},
              "action": {"loss": {"model": "gilbert-elliott", "p": "5%", "r": "25%"}}}]  # fmt: skip
    with network("act-ge", rules) as s:
        tx, rx = udp(s, 9000, count=4000, rate=4000)
    # Loss rate p/(p+r) = 16.7 %, mean burst 1/r = 4 packets.
    assert 0.11 < rx["loss_rate"] < 0.23, rx
    assert 3.0 < rx["mean_loss_run"] < 5.2, rx
    assert rx["max_loss_run"] >= 8  # bursts, not scattered single losses
    assert rule(s, "ge")["drops"] == {"loss": rx["lost"]}


# -- cut -------------------------------------------------------------------------------------------


def test_cut_by_packets_and_bytes_is_exact() -> None:
    rules = [
        {"name": "cut-pkts", "match": {"transport": "udp", "dst_port": 9001}, "action": {"cut": {"after_packets": 25}}},
        {
            "name": "cut-bytes",
            "match": {"transport": "udp", "dst_port": 9002},
            "action": {"cut": {"after_bytes": "16KB"}},
        },
        {"name": "cut-tcp", "match": {"transport": "tcp", "dst_port": 443}, "action": {"cut": {"after_packets": 20}}},
    ]
    with network("act-cut", rules, nodes=HTTPS_NODES) as s:
        _, pk = udp(s, 9001, count=60, rate=500, size=100, idle=0.5)
        _, by = udp(s, 9002, count=60, rate=500, size=972, idle=0.5)  # 1000-byte IP packets
        before = {n: s.snmp(n)["Tcp.InSegs"] for n in ("caller", "server")}
        code, _, out = curl(s, "/bytes/200000", max_time=2)
        through = sum(s.snmp(n)["Tcp.InSegs"] - before[n] for n in ("caller", "server"))
    assert pk["unique"] == 25 and pk["max_seq"] == 24
    assert by["unique"] == 16 and by["ip_bytes"] == 16_000
    assert code != 0  # frozen mid-transfer
    assert through == 20  # both directions counted, exactly
    assert rule(s, "cut-pkts")["drops"] == {"cut": 35}
    assert rule(s, "cut-bytes")["drops"] == {"cut": 44}
    assert s.censor is not None
    cuts = {e["rule"]: e for e in s.censor["events"] if e["event"] == "cut"}
    assert (
        cuts["cut-pkts"]["packets"] == 25 and cuts["cut-bytes"]["bytes"] == 16_000 and cuts["cut-tcp"]["packets"] == 20
    )


def test_cut_then_reject_resets_both_ends() -> None:
    rules = [{"name": "cut-rst", "match": {"transport": "tcp", "dst_port": 443},
              "action": {"cut": {"after_bytes": "8KB", "then": "reject"}}}]  # fmt: skip
    with network("act-cut-reject", rules, nodes=HTTPS_NODES) as s:
        before = {n: s.snmp(n) for n in ("caller", "server")}
        code, _, out = curl(s, "/bytes/100000", max_time=8)
        after = {n: s.snmp(n) for n in ("caller", "server")}
    # Not a freeze: the transfer ends at once with a reset (curl: exit 56 "Connection reset" or
    # 35 in the handshake), and both ends saw an RST (Tcp.InErrs is not it; EstabResets is).
    assert code in (35, 56), out
    assert after["caller"]["Tcp.EstabResets"] - before["caller"]["Tcp.EstabResets"] >= 1
    assert after["server"]["Tcp.EstabResets"] - before["server"]["Tcp.EstabResets"] >= 1
    r = rule(s, "cut-rst")
    assert r["rejected"] >= 1 and r["drops"].get("cut", 0) >= 1
    assert s.censor is not None and s.censor["injected"] >= 2


def test_throttle_aggregate_is_shared_by_flows() -> None:
    rules = [{"name": "agg", "match": {"transport": "udp", "dst_port": ["9001-9002"]},
              "action": {"throttle": {"rate": "1Mbit", "burst": 5000, "mode": "police", "per": "aggregate"}}}]  # fmt: skip
    with network("act-aggregate", rules) as s:
        rxs = [s.popen("server", [PY, "-m", "testbed.tools.udpseq", "recv", str(p), "--count", "500", "--idle", "1",
                                  "--timeout", "30"]) for p in (9001, 9002)]  # fmt: skip
        for rx in rxs:
            assert rx.stdout is not None and rx.stdout.readline().startswith('{"ready"')
        # Different rates: two senders with the same period can phase-lock so that one always
        # arrives just after the refill and takes every token (a shared policer is not fair).
        txs = [s.popen("caller", [PY, "-m", "testbed.tools.udpseq", "send", s.address("server"), str(p), "--count", "500",
                                  "--rate", str(rate), "--size", "1000"]) for p, rate in ((9001, 200), (9002, 230))]  # fmt: skip
        for tx in txs:
            tx.communicate(timeout=30)
        reports = [json.loads(rx.communicate(timeout=30)[0].strip().splitlines()[-1]) for rx in rxs]
    # Two flows of 1.6 and 1.9 Mbit/s share one 1 Mbit/s bucket: together about 1 Mbit/s.
    total = sum(r["ip_bytes"] for r in reports) * 8 / max(r["span_s"] for r in reports)
    assert 0.6e6 < total < 1.3e6, reports
    assert all(r["unique"] > 50 for r in reports)  # both got a share
    assert rule(s, "agg")["matched_flows"] == 2


# -- residual blocking, ignore and the inspection limit, time windows --------------------------------


def test_block_after_blocks_the_server_for_every_protocol() -> None:
    nodes = {**NODES, "other": {"side": "outside"}}
    rules = [{"name": "trigger", "match": {"transport": "udp", "dst_port": 9000},
              "action": {"drop": True, "block_after": {"for": "60s", "key": "server"}}}]  # fmt: skip
    with network("act-block-after", rules, nodes=nodes) as s:
        before = ping(s, count=2, interval=0.2)
        udp(s, 9000, count=5, rate=100, idle=0.3)
        after = ping(s, count=3, interval=0.2, wait=1)
        other = ping(s, count=2, interval=0.2, to="other")
    assert len(before) == 2  # nothing blocked the server before the trigger
    assert after == {}  # ICMP to the same server is now blocked too (key: server)
    assert len(other) == 2  # another server is not
    r = rule(s, "trigger")
    # The first datagram triggers the block; the residual block, checked before the rules, takes
    # the other 4 and the pings.
    assert r["drops"] == {"drop": 1, "residual": 4 + 3}
    assert s.censor is not None and s.censor["residual"]["triggered"] == 1
    events = [e["event"] for e in s.censor["events"] if e["rule"] == "trigger"]
    assert "block" in events and "residual" in events


def test_sni_1_with_a_residual_block_resets_first_then_blocks() -> None:
    # SNI-I as docs/policy.md writes it (A.2): curl must get the rewritten RST (exit 35, "reset
    # by peer"), not a timeout (28) from a residual block that started at the ClientHello and
    # dropped the server's reply; only the next connection meets the residual block (dropped).
    rules = [{"name": "sni-1", "match": {"sni": "site.example", "initiator": "inside"},
              "action": {"reject": "rewrite", "block_after": {"for": "75s"}}}]  # fmt: skip
    with network("act-sni-1-residual", rules, nodes=HTTPS_NODES) as s:
        reset, _, out = curl(s, "/", max_time=5)
        later, _, later_out = curl(s, "/", max_time=3)
    assert reset == 35, out
    assert later == 28, later_out  # the residual block drops the SYN: curl times out
    r = rule(s, "sni-1")
    assert r["rewritten"] >= 1 and r["drops"].get("residual", 0) >= 1, r


def test_ignore_and_inspection_limit() -> None:
    rules = [
        {"name": "junk-first", "match": {"packet_index": 1, "payload_size": {"min": 101}}, "action": "ignore"},
        {"name": "magic", "match": {"payload": {"offset": 0, "hex": "55445351"}}, "action": "drop"},  # udpseq's b"UDSQ"
    ]
    with network("act-ignore", rules, policy={"inspect_packets": 5}) as s:
        _, ignored = udp(s, 9001, count=30, rate=200, size=200, idle=0.5)
        _, limited = udp(s, 9002, count=30, rate=200, size=64, idle=0.5)
    # A flow whose first packet is >= 101 B of payload is ignored: nothing ever matches it again.
    assert ignored["unique"] == 30
    # Payload patterns see only the first 5 packets; the rest go through.
    assert limited["unique"] == 25 and limited["first_seq"] == 5
    assert rule(s, "junk-first")["matched_flows"] == 1
    assert rule(s, "magic")["drops"] == {"drop": 5}
    assert s.censor is not None and any(e["event"] == "ignore" for e in s.censor["events"])


def test_time_window_blocks_periodically() -> None:
    rules = [
        {"name": "window", "match": {"transport": "udp", "time": {"every": "2s", "active": "1s"}}, "action": "drop"}
    ]
    with network("act-window", rules) as s:
        _, rx = udp(s, 9000, count=400, rate=100, idle=1.5)  # 4 s: two on/off cycles
    assert 0.25 < rx["loss_rate"] < 0.75, rx
    # Losses come in whole windows: ~100 packets (1 s at 100/s) at a time.
    # (a sender running late under load catches up in a burst: some slack above 100)
    assert 1 <= rx["loss_runs"] <= 3 and 50 <= rx["max_loss_run"] <= 200, rx
    assert rule(s, "window")["drops"] == {"drop": rx["lost"]}
