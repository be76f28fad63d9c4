"""core.flow: bidirectional keys, initiator, idle timeouts, LRU eviction with a report."""

from __future__ import annotations

import pytest
from _dpi_helpers import tcp4, udp4

from testbed.core.flow import Direction, EndReason, Flow, FlowKey, FlowTable
from testbed.core.packet import parse_ip

A2B = parse_ip(udp4("10.0.0.1", 5000, "10.0.0.2", 3478, b"x"))
B2A = parse_ip(udp4("10.0.0.2", 3478, "10.0.0.1", 5000, b"y"))


def test_key_is_direction_free() -> None:
    assert FlowKey.of(A2B) == FlowKey.of(B2A)
    assert hash(FlowKey.of(A2B)) == hash(FlowKey.of(B2A))
    assert FlowKey.of(A2B).transport == "udp"


def test_lookup_directions_and_initiator() -> None:
    t = FlowTable()
    f, d, new = t.lookup(A2B, 0.0)
    assert new and d is Direction.ORIGINAL and f.initiator == "10.0.0.1:5000"
    f2, d2, new2 = t.lookup(B2A, 0.5)
    assert f2 is f and d2 is Direction.REPLY and not new2
    f.count(d2, 100, 0.5)
    assert (f.packets_reply, f.bytes_reply, f.last_seen) == (1, 100, 0.5)
    assert len(t) == 1 and list(t) == [f]


def test_syn_ack_first_means_receiver_initiated() -> None:
    t = FlowTable()
    synack = parse_ip(tcp4("10.0.0.2", 443, "10.0.0.1", 40000, b"", flags=0x12))
    f, d, new = t.lookup(synack, 0.0)
    assert new and d is Direction.REPLY and f.initiator == "10.0.0.1:40000"


def test_idle_timeout_per_transport() -> None:
    ended: list[Flow] = []
    t = FlowTable(udp_idle_timeout=10, tcp_idle_timeout=100, on_evict=ended.append)
    udp_flow, _, _ = t.lookup(A2B, 0.0)
    tcp_flow, _, _ = t.lookup(parse_ip(tcp4("10.0.0.1", 1, "10.0.0.2", 2, b"")), 0.0)
    assert t.expire(50.0) == [udp_flow]
    assert udp_flow.ended is EndReason.IDLE and ended == [udp_flow]
    assert t.expire(99.0) == [] and len(t) == 1
    assert t.expire(101.0) == [tcp_flow] and len(t) == 0 and t.expired == 2


def test_idle_flow_is_replaced_on_next_packet_even_before_sweep() -> None:
    t = FlowTable(udp_idle_timeout=10, expire_interval=1e9)
    f, _, _ = t.lookup(A2B, 0.0)
    t.expire(0.0)
    g, d, new = t.lookup(B2A, 20.0)
    assert new and g is not f and g.initiator == "10.0.0.2:3478" and d is Direction.ORIGINAL


def test_lru_eviction_is_reported() -> None:
    ended: list[Flow] = []
    t = FlowTable(max_flows=2, on_evict=ended.append)
    flows = [t.lookup(parse_ip(udp4("10.0.0.1", p, "10.0.0.2", 53, b"")), float(p))[0] for p in (1, 2)]
    t.lookup(parse_ip(udp4("10.0.0.2", 53, "10.0.0.1", 1, b"")), 3.0)  # touch flow 1
    t.lookup(parse_ip(udp4("10.0.0.1", 3, "10.0.0.2", 53, b"")), 4.0)
    assert ended == [flows[1]] and flows[1].ended is EndReason.EVICTED
    assert t.evicted == 1 and len(t) == 2


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        FlowTable(max_flows=0)
    with pytest.raises(ValueError):
        FlowTable(udp_idle_timeout=0)
