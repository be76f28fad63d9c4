"""The censor's sans-IO pipeline, driven by a fake packet source with virtual time."""

from __future__ import annotations

import struct

import pytest

from testbed.core.classify import Classifier
from testbed.core.engine import CensorEngine
from testbed.core.verdict import ACCEPT, DROP, Action, RejectKind, Verdict


def _ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        1,
        0,
        64,
        17,
        0,
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
    )
    return hdr + udp


class FakePacketSource:
    """Plays (time, bytes) pairs into an engine, as the NFQUEUE adapter would."""

    def __init__(self, packets: list[tuple[float, bytes]]) -> None:
        self.packets = packets

    def play(self, engine: CensorEngine) -> list[Verdict]:
        return [engine.handle(data, now) for now, data in self.packets]


def test_accept_all_counts_packets_bytes_and_flows_per_direction() -> None:
    a, b = ("198.18.1.2", 40000), ("198.18.2.2", 50000)
    pkts = [
        (0.0, _ipv4_udp(*a, *b, b"x" * 100)),
        (0.02, _ipv4_udp(*b, *a, b"y" * 60)),
        (0.04, _ipv4_udp(*a, *b, b"x" * 100)),
    ]
    engine = CensorEngine(Classifier(), start=0.0)
    verdicts = FakePacketSource(pkts).play(engine)
    assert verdicts == [ACCEPT] * 3
    summary = engine.summary()
    assert summary["packets"] == 3
    assert summary["bytes"] == sum(len(d) for _, d in pkts)
    (flow,) = summary["flows"]
    assert flow["transport"] == "udp"
    assert flow["initiator"] == "198.18.1.2:40000"
    assert (flow["packets_orig"], flow["packets_reply"]) == (2, 1)
    assert flow["bytes_orig"] == 2 * 128 and flow["bytes_reply"] == 88
    assert flow["verdicts"] == {"accept": 3}
    assert flow["first_seen_s"] == 0.0 and flow["last_seen_s"] == 0.04


def test_initiator_is_whoever_spoke_first() -> None:
    a, b = ("198.18.1.2", 40000), ("198.18.2.2", 50000)
    engine = CensorEngine(Classifier())
    engine.handle(_ipv4_udp(*b, *a, b"hi"), 1.0)
    engine.handle(_ipv4_udp(*a, *b, b"hi"), 1.1)
    (flow,) = engine.summary()["flows"]
    assert flow["initiator"] == "198.18.2.2:50000"


def test_garbage_is_counted_as_malformed_and_passed() -> None:
    engine = CensorEngine(Classifier())
    assert engine.handle(b"\x45\x00garbage", 0.0) == ACCEPT
    assert engine.handle(b"", 0.0) == ACCEPT
    s = engine.summary()
    assert s["malformed"] == 2 and s["packets"] == 2 and s["flows"] == []


class FakeDropPolicy:
    def decide(self, packet: object, obs: object, now: float) -> Verdict:
        return DROP


def test_policy_verdicts_are_counted() -> None:
    engine = CensorEngine(Classifier(), FakeDropPolicy())
    engine.handle(_ipv4_udp("198.18.1.2", 1, "198.18.2.2", 2, b"z"), 0.0)
    assert engine.summary()["actions"] == {"drop": 1}


def test_verdict_invariants() -> None:
    assert Verdict(Action.HOLD, until=1.0).until == 1.0
    assert Verdict(Action.REJECT, reject=RejectKind.TCP_RST).reject is RejectKind.TCP_RST
    with pytest.raises(ValueError):
        Verdict(Action.HOLD)
    with pytest.raises(ValueError):
        Verdict(Action.ACCEPT, until=1.0)
    with pytest.raises(ValueError):
        Verdict(Action.REJECT)


def test_ended_flows_are_reported_and_bounded() -> None:
    classifier = Classifier(max_flows=2)
    engine = CensorEngine(classifier, max_ended_records=1)
    for port in (1, 2, 3, 4):  # each new flow beyond two evicts the oldest
        engine.handle(_ipv4_udp("198.18.1.2", port, "198.18.2.2", 9, b"p"), float(port))
    s = engine.summary()
    assert len(s["flows"]) == 3  # two live + one ended record
    assert s["flows_omitted"] == 1
    ended = [f for f in s["flows"] if f.get("ended")]
    assert ended and ended[0]["ended"] == "evicted" and ended[0]["packets"] == 1


class FakeRulePolicy:
    """Accepts everything; says a rule matched the flows to ``hit_ports``."""

    def __init__(self, hit_ports: set[int]) -> None:
        self.hit_ports = hit_ports

    def decide(self, packet: object, obs: object, now: float) -> Verdict:
        return ACCEPT

    def flow_record(self, flow: object) -> dict[str, object]:
        port = int(flow.responder_port)
        return {"rule": "hit" if port in self.hit_ports else None}


def test_summary_lists_a_bounded_number_of_flows_the_telling_ones_first() -> None:
    # 250 single-packet flows (a probe that sends one datagram to each of 250 ports): the
    # summary keeps the flows a rule matched, then the biggest, and counts the rest.
    engine = CensorEngine(Classifier(), FakeRulePolicy({20003, 20007}), max_summary_flows=5)  # type: ignore[arg-type]
    for i in range(250):
        engine.handle(_ipv4_udp("198.18.1.2", 40000, "198.18.2.2", 20000 + i, b"x" * (10 + i)), i * 0.001)
    s = engine.summary()
    ports = [int(f["endpoints"][1].rsplit(":", 1)[1]) for f in s["flows"]]
    assert ports == [20003, 20007, 20247, 20248, 20249]  # in order of first packet
    assert s["flows_total"] == 250 and s["flows_omitted"] == 245
    assert s["packets"] == 250  # the totals still count every packet


def test_summary_below_the_bound_lists_every_flow() -> None:
    engine = CensorEngine(Classifier())
    for i in range(250):
        engine.handle(_ipv4_udp("198.18.1.2", 40000, "198.18.2.2", 20000 + i, b"x"), i * 0.001)
    s = engine.summary()
    assert len(s["flows"]) == 250 and s["flows_total"] == 250 and s["flows_omitted"] == 0
