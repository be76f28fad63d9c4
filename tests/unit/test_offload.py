"""core/offload.py: which flows leave the queue, and the merge of conntrack counts (sans-IO)."""

from __future__ import annotations

import pytest
from test_policy_support import CALLEE, CALLEE6, CALLER, CALLER6, RELAY, a, engine, handshake, play, policy, tcp, udp

from testbed.core.craft import ip_packet
from testbed.core.engine import CensorEngine
from testbed.core.flow import Flow
from testbed.core.offload import KernelCounts, OffloadTable, offloadable
from testbed.core.policy import RulePolicy
from testbed.records.json import JsonObject


def rules_of(*rules: str) -> str:
    return "rules:\n" + "".join(f"  - {r}\n" for r in rules)


def udp_stream(n: int, *, dt: float = 0.01, t0: float = 0.0, size: int = 200, sport: int = 40000,
               dst: str = CALLEE, dport: int = 5000) -> list[tuple[float, bytes]]:  # fmt: skip
    # Plain payloads: no dissector claims them, so inspection ends after its packet budget.
    return [(t0 + i * dt, udp(CALLER, sport, dst, dport, bytes(size - 28))) for i in range(n)]


def only_flow(e: CensorEngine) -> Flow:
    flows = list(e.classifier.flows())
    assert len(flows) == 1
    return flows[0]


def run(rules: str, n: int = 60, **kw: object) -> tuple[RulePolicy, CensorEngine, Flow]:
    p = policy(rules)
    e = engine(p, inspect_packets=4)
    play(e, udp_stream(n, **kw))  # type: ignore[arg-type]
    return p, e, only_flow(e)


# --- which flows may leave the queue -------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        rules_of("{name: tcp-only, match: {transport: tcp}, action: drop}"),  # no rule can match
        rules_of("{name: ok, match: {dst: callee}, action: accept}"),  # unconditional accept
        rules_of("{name: early, match: {packet_index: {max: 3}}, action: {delay: 5ms}}"),  # bound passed
        rules_of("{name: dpi-gives-up, match: {dst: callee}, action: ignore}"),
    ],
    ids=["no-rule-applies", "accept", "expired-bound", "ignore"],
)
def test_flows_whose_verdict_cannot_change_are_offloadable(rules: str) -> None:
    _, _, flow = run(rules)
    assert offloadable(flow)


@pytest.mark.parametrize(
    "rules",
    [
        rules_of("{name: t, action: {throttle: {rate: 800kbit, burst: 20KB}}}"),
        rules_of("{name: c, action: {cut: {after_packets: 1000}}}"),
        rules_of("{name: d, action: {delay: 5ms}}"),
        rules_of("{name: l, action: {loss: 1%}}"),
        rules_of("{name: tw, match: {time: {from: 100s}}, action: drop}"),
        rules_of("{name: flap, match: {time: {every: 10s, active: 5s}}, action: drop}"),
        rules_of("{name: b, match: {dst: relay}, action: {drop: true, block_after: {for: 40s}}}"),
        rules_of("{name: late, match: {packet_index: {min: 100}}, action: drop}"),
        rules_of("{name: big, match: {flow_bytes: {min: 1MB}}, action: drop}"),
    ],
    ids=["throttle", "cut", "delay", "loss", "time-window", "schedule", "residual-block", "packet-index", "bytes"],
)
def test_flows_a_rule_may_still_act_on_stay_queued(rules: str) -> None:
    _, _, flow = run(rules)
    assert not offloadable(flow)


def test_a_flow_still_inspected_stays_queued_until_inspection_ends() -> None:
    p = policy(rules_of("{name: ok, match: {dst: callee}, action: accept}"))
    e = engine(p, inspect_packets=4)
    play(e, udp_stream(2))
    flow = only_flow(e)
    assert p.is_settled(flow) and flow.inspecting and not offloadable(flow)
    play(e, udp_stream(4, t0=1.0))
    assert not flow.inspecting and offloadable(flow)


def test_tcp_flow_settles_for_offload_after_its_handshake_and_inspection() -> None:
    p = policy(rules_of("{name: udp-stun, match: {transport: udp, labels: [stun]}, action: drop}"))
    e = engine(p, inspect_packets=2)
    play(e, handshake(CALLER, 40000, CALLEE, 80))
    play(e, [(0.1 + i * 0.01, tcp(CALLER, 40000, CALLEE, 80, seq=1000 + 10 * i, payload=b"0123456789"))
             for i in range(3)])  # fmt: skip
    assert offloadable(only_flow(e))


def test_ipv6_flows_stay_queued() -> None:
    p = policy(rules_of("{name: ok, action: accept}"))
    e = engine(p, inspect_packets=0)
    play(e, [(i * 0.1, udp(CALLER6, 40000, CALLEE6, 5000)) for i in range(3)])
    flow = only_flow(e)
    assert p.is_settled(flow) and not offloadable(flow)


def test_icmp_is_never_offloaded() -> None:
    p = policy(rules_of("{name: ok, action: accept}"))
    e = engine(p, inspect_packets=0)
    echo = bytes([8, 0, 0, 0, 0, 7, 0, 1]) + b"ping"
    play(e, [(i * 0.1, ip_packet(a(CALLER), a(CALLEE), 1, echo)) for i in range(3)])
    flow = only_flow(e)
    assert p.is_settled(flow) and not offloadable(flow)


# --- merging the kernel's counts -------------------------------------------------------------


def ct(flow: Flow, po: int, bo: int, pr: int, br: int, *, entry_id: int = 1, reversed_: bool = False) -> KernelCounts:
    """A conntrack entry for ``flow``, oriented as conntrack would be (or reversed)."""
    ini = (flow.initiator_addr, flow.initiator_port)
    res = (flow.responder_addr, flow.responder_port)
    if reversed_:
        return KernelCounts(entry_id, flow.key.proto, *res, *ini, pr, br, po, bo)
    return KernelCounts(entry_id, flow.key.proto, *ini, *res, po, bo, pr, br)


def summary_counts(e: CensorEngine, now: float) -> JsonObject:
    s = e.summary(now=now)
    flows = s["flows"]
    assert isinstance(flows, list)
    return {
        "packets": s["packets"],
        "bytes": s["bytes"],
        "actions": s["actions"],
        "rules": s["rules"],
        "default": s["default"],
        "settled_packets": s["settled"]["packets"],  # type: ignore[call-overload,index]
        "flows": [
            {k: f[k] for k in ("packets_orig", "bytes_orig", "packets_reply", "bytes_reply", "verdicts", "rules")}
            for f in flows
        ],  # type: ignore[index]  # fmt: skip
    }


@pytest.mark.parametrize(
    "rules",
    [
        rules_of("{name: ok, match: {dst: callee}, action: accept}"),
        rules_of("{name: tcp-only, match: {transport: tcp}, action: drop}"),
    ],
    ids=["by-rule", "by-default"],
)
def test_merged_counts_equal_what_the_queue_would_have_counted(rules: str) -> None:
    """The same traffic, all queued vs. the first 10 packets queued and the rest forwarded by the
    kernel: the summaries' counters are equal."""
    queued = engine(policy(rules), inspect_packets=4)
    both = [*udp_stream(30, size=200), *[(1.0 + i * 0.01, udp(CALLEE, 5000, CALLER, 40000, bytes(472)))
                                         for i in range(20)]]  # fmt: skip
    play(queued, both)

    e = engine(policy(rules), inspect_packets=4)
    table = OffloadTable(e)
    play(e, both[:10])
    flow = only_flow(e)
    assert table.claim(flow)
    # The kernel forwarded the rest: conntrack counted every packet (queued ones included).
    table.merge([ct(flow, 30, 30 * 200, 20, 20 * 500, reversed_=True)], now=1.5)
    table.merge([ct(flow, 30, 30 * 200, 20, 20 * 500, reversed_=True)], now=1.6)  # idempotent
    assert summary_counts(e, 2.0) == summary_counts(queued, 2.0)
    assert table.summary()["kernel_packets"] == 40 and table.summary()["kernel_bytes"] == 20 * 200 + 20 * 500
    assert flow.last_seen == 1.5


def test_a_packet_counted_by_both_is_taken_back_at_the_next_merge() -> None:
    p = policy(rules_of("{name: ok, action: accept}"))
    e = engine(p, inspect_packets=4)
    table = OffloadTable(e)
    play(e, udp_stream(10))
    flow = only_flow(e)
    assert table.claim(flow)
    # Packet 11 was still in the queue at the merge: conntrack counted it, then the engine did.
    table.merge([ct(flow, 11, 11 * 200, 0, 0)], now=1.0)
    play(e, udp_stream(1, t0=1.01))
    assert flow.packets_orig == 12
    table.merge([ct(flow, 11, 11 * 200, 0, 0)], now=2.0)
    # (the first packet matched the rule before the flow settled: 10 settled packets)
    assert (flow.packets_orig, flow.bytes_orig, e.stats.packets, p.settled_packets) == (11, 2200, 11, 10)
    assert p.summary()["rules"][0]["packets"] == 11  # type: ignore[index]


def test_a_new_conntrack_entry_adds_to_the_old_one() -> None:
    p = policy(rules_of("{name: ok, action: accept}"))
    e = engine(p, inspect_packets=4)
    table = OffloadTable(e)
    play(e, udp_stream(10))
    flow = only_flow(e)
    table.claim(flow)
    table.merge([ct(flow, 50, 50 * 200, 0, 0, entry_id=1)], now=1.0)
    # The entry timed out (the flow was idle 30 s) and the next packets made a new one.
    table.merge([ct(flow, 5, 5 * 200, 0, 0, entry_id=2)], now=40.0)
    assert flow.packets_orig == 55 and flow.bytes_orig == 55 * 200


def test_entries_of_flows_not_offloaded_or_ended_change_nothing() -> None:
    p = policy(rules_of("{name: ok, action: accept}"))
    e = engine(p, inspect_packets=4)
    table = OffloadTable(e)
    play(e, udp_stream(10))
    flow = only_flow(e)
    stranger = KernelCounts(9, 17, a(CALLER), 1, a(RELAY), 2, 5, 500, 0, 0)
    table.merge([stranger, ct(flow, 99, 9900, 0, 0)], now=1.0)
    assert flow.packets_orig == 10 and table.summary()["unmatched_entries"] == 2
    table.claim(flow)
    e.classifier.table.remove(flow)  # its record is written
    table.merge([ct(flow, 99, 9900, 0, 0)], now=2.0)
    assert flow.packets_orig == 10 and e.stats.packets == 10
