"""The Iran protocol filter (censor-behaviors.md H.24) and what it needs: the ``data_packet``
matcher, the flow's data-packet counters, ``block_after.restart``, and the docs/policy.md recipe
driven through the engine in virtual time."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from _dpi_helpers import build_client_hello, tls_record
from test_policy_support import (
    ACK,
    CALLEE,
    CALLER,
    SYN,
    SYNACK,
    engine,
    handshake,
    play,
    policy,
    tcp,
    udp,
)

from testbed.core.classify import Classifier
from testbed.core.flow import Direction
from testbed.core.packet import parse_ip
from testbed.core.verdict import Verdict

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
JUNK = random.Random(24).randbytes(64)  # what ncat, SSH or a fully encrypted proxy sends first
HTTP_GET = b"GET / HTTP/1.1\r\nHost: site.example\r\nUser-Agent: curl/8.5\r\n\r\n"


def _dns_tcp_query() -> bytes:
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack("!HH", 1, 1)
    return struct.pack("!H", len(q)) + q


def rules_of(*rules: str) -> str:
    return "rules:\n" + "".join(f"  - {r}\n" for r in rules)


def actions(vs: list[Verdict]) -> list[str]:
    return [v.action.value for v in vs]


def client_data(cport: int, payload: bytes, *, t: float, seq: int = 1000, dport: int = 443) -> tuple[float, bytes]:
    return (t, tcp(CALLER, cport, CALLEE, dport, seq=seq, payload=payload))


def server_data(cport: int, payload: bytes, *, t: float, dport: int = 443) -> tuple[float, bytes]:
    return (t, tcp(CALLEE, dport, CALLER, cport, seq=5000, ack=1000 + 64, payload=payload))


# --- the flow's counters ----------------------------------------------------------------------


def test_data_packets_counted_per_direction_without_handshake_acks_or_retransmissions() -> None:
    c = Classifier()
    pk = [raw for _, raw in handshake(CALLER, 1, CALLEE, 80)]
    pk += [
        tcp(CALLER, 1, CALLEE, 80, seq=1000, payload=b"a" * 10),
        tcp(CALLEE, 80, CALLER, 1, seq=5000, ack=1010, flags=ACK),  # pure ACK
        tcp(CALLER, 1, CALLEE, 80, seq=1000, payload=b"a" * 10),  # retransmission
        tcp(CALLER, 1, CALLEE, 80, seq=1005, payload=b"a" * 10),  # overlaps, reaches new data
        tcp(CALLEE, 80, CALLER, 1, seq=5000, payload=b"b" * 3),
        tcp(CALLER, 1, CALLEE, 80, seq=0xFFFFFFF0, payload=b"c"),  # old (behind): not new
    ]
    for i, raw in enumerate(pk):
        c.observe(parse_ip(raw), i * 0.01)
    f = next(iter(c.flows()))
    assert (f.packets_orig, f.packets_reply) == (6, 3)
    assert (f.data_orig, f.data_reply) == (2, 1)


def test_sequence_wraparound_counts_as_new_data() -> None:
    c = Classifier()
    for i, seq in enumerate((0xFFFFFFF8, 0x00000000, 0x00000008)):
        c.observe(parse_ip(tcp(CALLER, 1, CALLEE, 80, seq=seq, payload=b"x" * 8)), i * 0.01)
    f = next(iter(c.flows()))
    assert f.data_orig == f.data_packets(Direction.ORIGINAL) == 3


def test_every_udp_datagram_is_a_data_packet() -> None:
    c = Classifier()
    for i in range(3):
        c.observe(parse_ip(udp(CALLER, 1, CALLEE, 53, b"")), i * 0.01)
        c.observe(parse_ip(udp(CALLEE, 53, CALLER, 1, b"x")), i * 0.01)
    f = next(iter(c.flows()))
    assert (f.data_packets(Direction.ORIGINAL), f.data_packets(Direction.REPLY)) == (3, 3)


# --- the matcher ------------------------------------------------------------------------------


def test_data_packet_matches_the_clients_nth_data_packet_only() -> None:
    text = rules_of("{name: first, match: {data_packet: 1}, action: drop}",
                    "{name: second-third, match: {data_packet: '2-3'}, action: accept}")  # fmt: skip
    pk = handshake(CALLER, 1, CALLEE, 443)  # SYN, SYN/ACK, ACK: not data
    pk += [client_data(1, b"x" * 64, t=0.1),  # data packet 1
           (0.11, tcp(CALLEE, 443, CALLER, 1, seq=5000, ack=1064, flags=ACK)),  # server's pure ACK
           server_data(1, b"y" * 100, t=0.12),  # the server's data: never a client data packet
           client_data(1, b"x" * 64, t=0.2),  # retransmission of data packet 1: still number 1
           client_data(1, b"z" * 10, t=0.3, seq=1064),  # 2
           (0.31, tcp(CALLER, 1, CALLEE, 443, seq=1074, flags=ACK)),  # the client's pure ACK
           client_data(1, b"z" * 10, t=0.4, seq=1074),  # 3
           client_data(1, b"z" * 10, t=0.5, seq=1084)]  # 4  # fmt: skip
    got = [v.rule for v in play(engine(policy(text)), pk)]
    assert got == [None, None, None, "first", None, None, "first", "second-third", None, "second-third", None]


def test_data_packet_udp_and_schema_forms() -> None:
    text = rules_of("{name: d2, match: {data_packet: {min: 2, max: 2}}, action: drop}")
    pk = [(0, udp(CALLER, 1, CALLEE, 53)), (0.1, udp(CALLEE, 53, CALLER, 1)), (0.2, udp(CALLER, 1, CALLEE, 53)),
          (0.3, udp(CALLER, 1, CALLEE, 53))]  # fmt: skip
    assert [v.rule for v in play(engine(policy(text)), pk)] == [None, None, "d2", None]


def test_data_packet_rule_is_pruned_once_past_its_range() -> None:
    p = policy(rules_of("{name: first, match: {data_packet: 1, labels: [stun]}, action: drop}"))
    e = engine(p)
    play(e, [(i * 0.1, udp(CALLER, 1, CALLEE, 9, b"x" * 20)) for i in range(3)])
    flow = next(iter(e.classifier.table))
    st = flow.policy
    assert st.candidates == [(), ()]


@pytest.mark.parametrize("bad", ["0-x", "{min: 3, max: 1}", "true"])
def test_data_packet_bad_values_are_load_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="data_packet"):
        policy(rules_of(f"{{name: x, match: {{data_packet: {bad}}}, action: drop}}"))


# --- block_after.restart ----------------------------------------------------------------------


def test_restart_timeline_exact() -> None:
    p = policy(rules_of("{name: trig, match: {transport: udp, dst_port: 9, payload: {offset: 0, hex: 'ff'}}, "
                        "action: {drop: true, block_after: {for: 10s, key: 3-tuple, restart: true}}}"))  # fmt: skip
    e = engine(p)
    vs = play(e, [
        (0.0, udp(CALLER, 100, CALLEE, 9, b"\xff")),  # trigger: blocked until 10
        (5.0, udp(CALLER, 101, CALLEE, 9, b"ok")),  # a new flow caught: restarts, until 15
        (9.0, udp(CALLER, 101, CALLEE, 9, b"ok")),  # the same flow again: no restart
        (14.0, udp(CALLER, 102, CALLEE, 9, b"ok")),  # new flow at 14 < 15: until 24
        (23.9, udp(CALLER, 102, CALLEE, 9, b"ok")),
        (24.0, udp(CALLER, 103, CALLEE, 9, b"ok")),  # expired exactly at 24
    ])  # fmt: skip
    assert actions(vs) == ["drop", "drop", "drop", "drop", "drop", "accept"]
    assert p.residual.restarted == 2
    residual = [round(ev["remaining_s"], 3) for ev in p.summary()["events"] if ev["event"] == "residual"]
    assert residual == [10.0, 10.0]  # each new flow saw a fresh 10 s


def test_without_restart_the_block_ends_on_time_however_many_flows_it_caught() -> None:
    p = policy(rules_of("{name: trig, match: {transport: udp, dst_port: 9, payload: {offset: 0, hex: 'ff'}}, "
                        "action: {drop: true, block_after: {for: 10s, key: 3-tuple}}}"))  # fmt: skip
    vs = play(engine(p), [(0.0, udp(CALLER, 100, CALLEE, 9, b"\xff")), (5.0, udp(CALLER, 101, CALLEE, 9, b"ok")),
                          (9.9, udp(CALLER, 102, CALLEE, 9, b"ok")), (10.0, udp(CALLER, 103, CALLEE, 9, b"ok"))])  # fmt: skip
    assert actions(vs) == ["drop", "drop", "drop", "accept"]
    assert p.residual.restarted == 0


def test_restart_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="restart"):
        policy(rules_of("{name: x, action: {drop: true, block_after: {for: 10s, restart: sometimes}}}"))


# --- the recipe in docs/policy.md -------------------------------------------------------------


def doc_recipe() -> dict[str, Any]:
    """The H.24 censor section exactly as docs/policy.md prints it."""
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "censor" in data:
            rules = data["censor"]["rules"]
            if [r["name"] for r in rules] == ["iran-protocol-filter"]:
                return {"rules": rules}
    raise AssertionError("docs/policy.md has no iran-protocol-filter censor section")


def _flow(cport: int, first: bytes, *, t: float, dport: int = 443) -> list[tuple[float, bytes]]:
    """Handshake, the client's first data, the server's answer, the client's next data."""
    return handshake(CALLER, cport, CALLEE, dport, t=t) + [
        client_data(cport, first, t=t + 0.01, dport=dport),
        server_data(cport, b"\x16\x03\x03" + bytes(200), t=t + 0.02, dport=dport),
        client_data(cport, b"\x17\x03\x03" + bytes(100), t=t + 0.03, seq=1000 + len(first), dport=dport),
    ]


def test_recipe_lets_tls_http_and_dns_through_on_any_filtered_port() -> None:
    p = policy(doc_recipe())
    e = engine(p)
    ch = tls_record(build_client_hello(sni="site.example"))
    for i, (first, dport) in enumerate([(ch, 443), (HTTP_GET, 80), (_dns_tcp_query(), 53), (HTTP_GET, 443),
                                        (ch, 80), (_dns_tcp_query(), 443)]):  # fmt: skip
        vs = play(e, _flow(41000 + i, first, t=i))
        assert actions(vs) == ["accept"] * 6, (first[:8], dport)
    r = p.summary()["rules"][0]
    assert r["dropped"] == 0 and r["matched_flows"] == 0


def test_recipe_drops_other_first_data_and_blocks_the_server_port_restarting() -> None:
    p = policy(doc_recipe())
    e = engine(p)
    vs = play(e, _flow(42000, JUNK, t=0.0))
    # The handshake passes (the SYN is not data: the old recipe dropped it); the junk is dropped,
    # then the residual block takes the server's reply and everything after.
    assert actions(vs) == ["accept", "accept", "accept", "drop", "drop", "drop"]
    assert [v.rule for v in vs[3:]] == ["iran-protocol-filter"] * 3
    # A new connection to the same server port 30 s later: its SYN is dropped, and the block
    # restarts, so 80 s after the trigger (past the first 60 s) it still holds.
    assert actions(play(e, [(30.0, tcp(CALLER, 42001, CALLEE, 443, flags=SYN, seq=999, ack=0))])) == ["drop"]
    assert actions(play(e, [(80.0, tcp(CALLER, 42002, CALLEE, 443, flags=SYN, seq=999, ack=0))])) == ["drop"]
    # Once 60 s pass with no new attempt, HTTPS works again.
    ch = tls_record(build_client_hello(sni="site.example"))
    assert actions(play(e, _flow(42003, ch, t=141.0))) == ["accept"] * 6
    r = p.summary()["rules"][0]
    assert r["matched_flows"] == 1 and r["drops"] == {"drop": 1, "residual": 4}


def test_recipe_leaves_other_ports_outside_initiators_and_udp_alone() -> None:
    p = policy(doc_recipe())
    e = engine(p)
    assert actions(play(e, _flow(43000, JUNK, t=0, dport=22))) == ["accept"] * 6
    outside = [(1.0, tcp(CALLEE, 43001, CALLER, 443, flags=SYN, seq=1, ack=0)),
               (1.01, tcp(CALLER, 443, CALLEE, 43001, flags=SYNACK, seq=2, ack=2)),
               (1.02, tcp(CALLEE, 43001, CALLER, 443, seq=2, payload=JUNK))]  # fmt: skip
    assert actions(play(e, outside)) == ["accept"] * 3
    assert actions(play(e, [(2.0, udp(CALLER, 43002, CALLEE, 53, JUNK))])) == ["accept"]
