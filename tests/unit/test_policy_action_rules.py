"""Every action, through the real engine, in virtual time: verdicts, timing, counters, events."""

from __future__ import annotations

import math
import statistics
from itertools import pairwise

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_support import (
    ACK,
    CALLEE,
    CALLEE6,
    CALLER,
    CALLER6,
    PSHACK,
    RELAY,
    SYN,
    a,
    engine,
    handshake,
    play,
    policy,
    tcp,
    udp,
)

from testbed.core.packet import TCPFlag, parse_ip
from testbed.core.policy import ORDER_EPS
from testbed.core.verdict import Action, RejectKind, Verdict


def rules_of(*rules: str, head: str = "") -> str:
    return head + "rules:\n" + "".join(f"  - {r}\n" for r in rules)


def stream(n: int, *, dt: float = 0.001, t0: float = 0.0, size: int = 1000, both: bool = False,
           src: str = CALLER, sport: int = 40000, dst: str = CALLEE, dport: int = 5000) -> list[tuple[float, bytes]]:  # fmt: skip
    out = []
    for i in range(n):
        if both and i % 2:
            out.append((t0 + i * dt, udp(dst, dport, src, sport, bytes(size - 28))))
        else:
            out.append((t0 + i * dt, udp(src, sport, dst, dport, bytes(size - 28))))
    return out


def actions(vs: list[Verdict]) -> list[str]:
    return [v.action.value for v in vs]


# --- accept / drop / ignore ------------------------------------------------------------------


def test_drop_and_accept_carry_the_rule_name() -> None:
    p = policy(rules_of("{name: ok, match: {dst: relay}, action: accept}", "{name: nope, action: drop}"))
    vs = play(engine(p), [(0, udp(CALLER, 1, RELAY, 2)), (0, udp(CALLER, 1, CALLEE, 2))])
    assert [(v.action, v.rule) for v in vs] == [(Action.ACCEPT, "ok"), (Action.DROP, "nope")]
    s = p.summary()
    assert s["rules"][0]["accepted"] == 1 and s["rules"][1]["dropped"] == 1
    assert s["rules"][1]["drops"] == {"drop": 1}


def test_ignore_stops_inspection_for_good() -> None:
    # A first packet of >= 101 bytes of junk stops TSPU's inspection (B.9).
    p = policy(rules_of(
        "{name: junk-first, match: {packet_index: 1, payload_size: {min: 101}, not: {labels: [tls]}}, action: ignore}",
        "{name: tls-block, match: {sni: {suffix: [twitter.com]}}, action: drop}",
    ))  # fmt: skip
    e = engine(p)
    ch = tls_record(build_client_hello(sni="twitter.com"))
    junk = [(0.0, tcp(CALLER, 1, CALLEE, 443, payload=bytes(range(120)))),
            (0.1, tcp(CALLER, 1, CALLEE, 443, seq=1120, payload=ch))]  # fmt: skip
    vs = play(e, junk)
    assert [(v.action, v.rule) for v in vs] == [(Action.ACCEPT, "junk-first"), (Action.ACCEPT, "junk-first")]
    flow = next(iter(e.classifier.flows()))
    assert p.is_settled(flow) and flow.policy is not None and flow.policy.settled
    # The same ClientHello first is blocked.
    vs = play(engine(p), [(0.0, tcp(CALLER, 2, CALLEE, 443, payload=ch))])
    assert vs[0].action is Action.DROP


def test_flows_no_rule_can_touch_are_settled_at_once() -> None:
    p = policy(rules_of("{name: udp-only, match: {transport: udp, labels: [stun]}, action: drop}"))
    e = engine(p)
    play(e, handshake(CALLER, 1, CALLEE, 80))
    flow = next(iter(e.classifier.flows()))
    assert p.is_settled(flow)
    # Settled before its first packet: all three are counted as settled, under the default.
    assert p.summary()["settled"] == {"flows": 1, "packets": 3}
    assert p.summary()["default"]["packets"] == 3


def test_an_unconditional_accept_settles_after_its_first_match() -> None:
    p = policy(
        rules_of(
            "{name: relay-ok, match: {addr: relay}, action: accept}",
            "{name: rest, match: {labels: [stun]}, action: drop}",
        )
    )
    e = engine(p)
    vs = play(e, [(i * 0.01, udp(CALLER, 1, RELAY, 2)) for i in range(5)])
    assert {v.rule for v in vs} == {"relay-ok"}
    flow = next(iter(e.classifier.flows()))
    assert p.is_settled(flow)
    r = p.summary()["rules"][0]
    assert r["packets"] == 5 and r["accepted"] == 5 and r["matched_flows"] == 1


# --- reject -------------------------------------------------------------------------------------


def test_reject_tcp_sends_rst_ack_to_both_ends_with_the_right_numbers() -> None:
    p = policy(rules_of("{name: rst, match: {dst_port: 443}, action: reject}"))
    v = play(engine(p), [(0, tcp(CALLER, 40000, CALLEE, 443, flags=PSHACK, seq=1000, ack=5000, payload=b"abc"))])[0]
    assert v.action is Action.REJECT and v.reject is RejectKind.TCP_RST and v.rule == "rst"
    to_client, to_server = (parse_ip(x) for x in v.inject)
    assert (to_client.dst, to_client.dport, to_client.tcp_seq, to_client.tcp_ack) == (a(CALLER), 40000, 5000, 1003)
    assert (to_server.dst, to_server.dport, to_server.tcp_seq, to_server.tcp_ack) == (a(CALLEE), 443, 1003, 5000)
    assert to_client.tcp_flags == to_server.tcp_flags == TCPFlag.RST | TCPFlag.ACK


def test_reject_to_one_end_and_never_answers_a_rst() -> None:
    p = policy(rules_of("{name: rst, action: {reject: {with: rst, to: client}}}"))
    vs = play(engine(p), [(0, tcp(CALLEE, 443, CALLER, 40000, flags=SYN)),  # outside initiates: client = callee
                          (0.1, tcp(CALLER, 40000, CALLEE, 443, flags=ACK, seq=7, ack=8)),
                          (0.2, tcp(CALLER, 40000, CALLEE, 443, flags=int(TCPFlag.RST), seq=7, ack=0))])  # fmt: skip
    assert [len(v.inject) for v in vs] == [1, 1, 0]
    assert parse_ip(vs[0].inject[0]).dst == a(CALLEE)
    assert parse_ip(vs[1].inject[0]).dst == a(CALLEE)


@pytest.mark.parametrize(("src", "dst", "proto"), [(CALLER, CALLEE, 1), (CALLER6, CALLEE6, 58)])
def test_reject_udp_sends_icmp_unreachable_quoting_the_datagram(src: str, dst: str, proto: int) -> None:
    p = policy(rules_of("{name: no-stun, match: {dst_port: 3478}, action: {reject: {icmp: admin}}}"))
    v = play(engine(p), [(0, udp(src, 5000, dst, 3478, b"hello"))])[0]
    assert v.reject is RejectKind.ICMP_UNREACHABLE
    (icmp,) = (parse_ip(x) for x in v.inject)
    assert icmp.proto == proto and icmp.dst == a(src) and icmp.src == a(dst)
    assert icmp.payload[1] == (13 if proto == 1 else 1)
    quoted = parse_ip(icmp.payload[8:])
    assert (quoted.sport, quoted.dport, quoted.payload) == (5000, 3478, b"hello")


def test_reject_rewrite_turns_the_servers_reply_into_rst_ack_tspu_sni_1() -> None:
    # SNI-I: the ClientHello passes; the server's reply is rewritten into RST/ACK (A.2).
    p = policy(rules_of("{name: sni-1, match: {sni: blocked.example}, action: {reject: rewrite}}"))
    ch = tls_record(build_client_hello(sni="blocked.example"))
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk += [(0.01, tcp(CALLER, 40000, CALLEE, 443, seq=1000, ack=5000, payload=ch)),
           (0.02, tcp(CALLEE, 443, CALLER, 40000, seq=5000, ack=1000 + len(ch), payload=b"\x16\x03\x03" + bytes(90)))]  # fmt: skip
    vs = play(engine(p), pk)
    assert [v.action for v in vs] == [Action.ACCEPT] * 5
    assert vs[3].rewrite is None and vs[3].rule == "sni-1"
    assert vs[4].rewrite is not None
    rst = parse_ip(vs[4].rewrite)
    assert rst.tcp_flags == TCPFlag.RST | TCPFlag.ACK and rst.payload == b""
    assert (rst.src, rst.sport, rst.tcp_seq, rst.tcp_ack) == (a(CALLEE), 443, 5000, 1000 + len(ch))
    s = p.summary()["rules"][0]
    assert s["rewritten"] == 1 and s["rejected"] == 1 and s["accepted"] == 1


# --- throttle -----------------------------------------------------------------------------------


def test_police_per_direction_buckets_are_independent() -> None:
    p = policy(rules_of("{name: tw, action: {throttle: {rate: 8kbit, burst: 3000}, direction: both}}"))
    # 1 KB/s with a 3000 B bucket: 3 packets each way pass at t=0, then drops.
    pk = stream(12, dt=0.0, both=True)
    vs = play(engine(p), pk)
    assert actions(vs) == ["accept"] * 6 + ["drop"] * 6


def test_police_per_flow_and_aggregate() -> None:
    per_flow = policy(rules_of("{name: t, action: {throttle: {rate: 8kbit, burst: 3000, per: flow}, direction: both}}"))
    assert actions(play(engine(per_flow), stream(6, dt=0.0, both=True))) == ["accept"] * 3 + ["drop"] * 3
    agg = policy(rules_of("{name: t, action: {throttle: {rate: 8kbit, burst: 3000, per: aggregate}}}"))
    pk = stream(2, dt=0.0, sport=1) + stream(2, dt=0.0, sport=2)
    assert actions(play(engine(agg), pk)) == ["accept", "accept", "accept", "drop"]


def test_police_long_run_rate_through_the_engine() -> None:
    p = policy(rules_of("{name: tw, action: {throttle: {rate: 130kbit, burst: 16KB}}}"))
    rate = 130_000 / 8
    pk = stream(20_000, dt=1000 / (4 * rate))  # offered at 4x the rate for ~15 s
    vs = play(engine(p), pk)
    passed = sum(1000 for v in vs if v.action is Action.ACCEPT)
    span = pk[-1][0]
    assert (passed - 16_000) / span == pytest.approx(rate, rel=0.01)
    s = p.summary()["rules"][0]
    assert s["drops"]["policed"] == s["dropped"] == sum(v.action is Action.DROP for v in vs)


def test_shape_holds_at_the_rate_and_drops_beyond_the_backlog() -> None:
    p = policy(
        rules_of("{name: shaper, action: {throttle: {rate: 80kbit, burst: 1500, mode: shape, backlog: 5KB}}}")
    )  # 10 KB/s
    vs = play(engine(p), stream(10, dt=0.0))
    held = [v for v in vs if v.action is Action.HOLD]
    assert vs[0].action is Action.ACCEPT
    assert [round(v.until or 0, 6) for v in held] == [0.05, 0.15, 0.25, 0.35, 0.45]
    assert actions(vs)[6:] == ["drop"] * 4
    s = p.summary()["rules"][0]
    assert s["delayed"] == 5 and s["drops"] == {"backlog": 4} and s["max_hold_s"] == pytest.approx(0.45)


# --- delay --------------------------------------------------------------------------------------


def test_delay_applies_to_the_original_direction_unless_told() -> None:
    one = policy(rules_of("{name: d, action: {delay: 100ms}}"))
    vs = play(engine(one), [(0, udp(CALLER, 1, CALLEE, 2)), (0.01, udp(CALLEE, 2, CALLER, 1))])
    assert (vs[0].action, vs[0].until) == (Action.HOLD, 0.1)
    assert vs[1].action is Action.ACCEPT and vs[1].rule == "d"
    both = policy(rules_of("{name: d, action: {delay: 100ms, direction: both}}"))
    vs = play(engine(both), [(0, udp(CALLER, 1, CALLEE, 2)), (0.01, udp(CALLEE, 2, CALLER, 1))])
    assert [v.until for v in vs] == [0.1, pytest.approx(0.11)]
    reply = policy(rules_of("{name: d, action: {delay: 100ms, direction: inbound}}"))
    vs = play(engine(reply), [(0, udp(CALLER, 1, CALLEE, 2)), (0.01, udp(CALLEE, 2, CALLER, 1))])
    assert vs[0].action is Action.ACCEPT and vs[1].until == pytest.approx(0.11)


def test_jitter_statistics_through_the_engine() -> None:
    p = policy(rules_of("{name: j, action: {delay: {time: 100ms, jitter: 10ms, distribution: normal, reorder: true}}}"))
    pk = stream(20_000, dt=0.05)
    vs = play(engine(p), pk)
    delays = [(v.until or 0) - t for v, (t, _) in zip(vs, pk, strict=True)]
    assert statistics.mean(delays) == pytest.approx(0.100, rel=0.01)
    assert statistics.pstdev(delays) == pytest.approx(0.010, rel=0.05)


def test_jitter_never_reorders_a_flow_by_default() -> None:
    p = policy(rules_of("{name: j, action: {delay: {time: 50ms, jitter: 40ms}, direction: both}}"))
    pk = stream(5000, dt=0.002, both=True)
    vs = play(engine(p), pk)
    for parity in (0, 1):
        untils = [v.until for i, v in enumerate(vs) if i % 2 == parity]
        assert all(u is not None for u in untils)
        assert all(b > a_ for a_, b in pairwise(untils)), "released before an earlier packet"  # type: ignore[operator]
        assert all(b - a_ >= ORDER_EPS * 0.999 for a_, b in pairwise(untils))  # type: ignore[operator]
    # With packets every 2 ms and +-40 ms jitter, the clamp must have pushed packets back.
    untils = [v.until or 0.0 for v in vs[::2]]
    pushed = sum(1 for x, y in pairwise(untils) if abs(y - x - ORDER_EPS) < 1e-9)
    assert pushed > 100


def test_reorder_true_lets_packets_overtake() -> None:
    p = policy(rules_of("{name: j, action: {delay: {time: 50ms, jitter: 40ms, reorder: true}}}"))
    vs = play(engine(p), stream(2000, dt=0.002))
    untils = [v.until for v in vs]
    assert any(b < a_ for a_, b in pairwise(untils))  # type: ignore[operator]


def test_no_overtaking_when_a_rule_stops_matching_mid_flow() -> None:
    # The delay rule ends at t=1 s; a packet at 1.0 s must still wait for the one held until 1.09.
    p = policy(rules_of("{name: d, match: {time: {until: 1s}}, action: {delay: 100ms}}"))
    vs = play(
        engine(p),
        [(0.99, udp(CALLER, 1, CALLEE, 2)), (1.0, udp(CALLER, 1, CALLEE, 2)), (2.0, udp(CALLER, 1, CALLEE, 2))],
    )
    assert vs[0].until == pytest.approx(1.09)
    assert vs[1].action is Action.HOLD and vs[1].rule is None and vs[1].until == pytest.approx(1.09 + ORDER_EPS)
    assert vs[2].action is Action.ACCEPT


# --- loss ---------------------------------------------------------------------------------------


def test_bernoulli_loss_rate_through_the_engine() -> None:
    p = policy(rules_of("{name: l, action: {loss: 5%}}"))
    n = 100_000
    vs = play(engine(p), stream(n, dt=0.0001, size=60))
    lost = sum(v.action is Action.DROP for v in vs)
    sd = math.sqrt(n * 0.05 * 0.95)
    assert abs(lost - n * 0.05) < 5 * sd
    assert p.summary()["rules"][0]["drops"] == {"loss": lost}


def test_gilbert_elliott_bursts_through_the_engine() -> None:
    p = policy(rules_of("{name: ge, action: {loss: {model: gilbert-elliott, p: 2%, r: 25%}}}"))
    vs = play(engine(p), stream(50_000, dt=0.0001, size=60))
    bursts, run = [], 0
    for v in vs:
        if v.action is Action.DROP:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert statistics.mean(bursts) == pytest.approx(4.0, rel=0.1)


def test_loss_and_delay_stack() -> None:
    p = policy(rules_of("{name: lossy, action: {loss: 50%, delay: 20ms}}"))
    vs = play(engine(p), stream(200, dt=0.001))
    assert {v.action for v in vs} == {Action.DROP, Action.HOLD}
    assert p.summary()["rules"][0]["action"] == "loss+delay (original)"


# --- cut ----------------------------------------------------------------------------------------


def test_cut_after_n_packets_counts_both_directions_exactly() -> None:
    # The 2025 freeze: ~25 packets both ways, then silence (E.13).
    p = policy(rules_of("{name: l4-25, match: {dst: callee}, action: {cut: {after_packets: 25}}}"))
    vs = play(engine(p), stream(40, both=True))
    assert actions(vs) == ["accept"] * 25 + ["drop"] * 15
    cut = [e for e in p.summary()["events"] if e["event"] == "cut"]
    assert len(cut) == 1 and cut[0]["packets"] == 25


def test_cut_after_bytes_lets_at_most_n_bytes_through() -> None:
    p = policy(rules_of("{name: freeze, action: {cut: {after_bytes: 16KB}}}"))
    vs = play(engine(p), stream(30, size=1000, both=True))
    assert actions(vs) == ["accept"] * 16 + ["drop"] * 14
    vs = play(engine(policy(rules_of("{name: f, action: {cut: {after_bytes: 16001}}}"))), stream(30, size=1000))
    assert actions(vs).count("accept") == 16


def test_cut_after_seconds_and_new_flows_get_a_fresh_budget() -> None:
    p = policy(rules_of("{name: t, action: {cut: {after_seconds: 1s}}}"))
    pk = stream(3, dt=0.5) + stream(1, t0=1.5, sport=40001)
    assert actions(play(engine(p), pk)) == ["accept", "accept", "drop", "accept"]


def test_cut_from_match_passes_n_more_packets_sni_2() -> None:
    # SNI-II: "an additional five to eight packets ... after which symmetric packet drops" (A.3).
    p = policy(rules_of("{name: sni-2, match: {sni: blocked.example}, action: {cut: {after_packets: 6, from: match}}}"))
    ch = tls_record(build_client_hello(sni="blocked.example"))
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk.append((0.01, tcp(CALLER, 40000, CALLEE, 443, payload=ch)))
    for i in range(10):
        pk.append((0.02 + i * 0.001, tcp(CALLEE, 443, CALLER, 40000, payload=bytes(100)) if i % 2
                   else tcp(CALLER, 40000, CALLEE, 443, payload=bytes(100))))  # fmt: skip
    vs = play(engine(p), pk)
    # The ClientHello is the first counted packet: it and 5 more pass, then both directions drop.
    assert actions(vs) == ["accept"] * 3 + ["accept"] * 6 + ["drop"] * 5


def test_cut_then_reject_sends_resets() -> None:
    p = policy(rules_of("{name: c, action: {cut: {after_packets: 4, then: reject}}}"))
    pk = handshake(CALLER, 1, CALLEE, 80) + [
        (0.1 + i / 100, tcp(CALLER, 1, CALLEE, 80, payload=b"x")) for i in range(3)
    ]
    vs = play(engine(p), pk)
    assert actions(vs) == ["accept"] * 4 + ["reject"] * 2
    assert all(len(v.inject) == 2 for v in vs[4:])
    assert p.summary()["rules"][0]["drops"] == {"cut": 2}


# --- block_after -------------------------------------------------------------------------------


def test_block_after_blocks_the_server_for_new_flows_until_expiry() -> None:
    p = policy(rules_of("{name: sni-4, match: {sni: blocked.example}, action: {drop: true, block_after: {for: 40s}}}"))
    e = engine(p)
    ch = tls_record(build_client_hello(sni="blocked.example"))
    vs = play(e, [(1.0, tcp(CALLER, 40000, CALLEE, 443, payload=ch))])
    assert vs[0].action is Action.DROP
    later = play(e, [
        (2.0, tcp(CALLER, 40001, CALLEE, 443, flags=SYN)),  # a new flow to the server: blocked
        (3.0, udp(CALLER, 5, CALLEE, 53)),  # any protocol and port ("server" key)
        (3.0, udp(CALLER, 5, RELAY, 53)),  # another server: fine
        (40.9, tcp(CALLER, 40002, CALLEE, 443, flags=SYN)),
        (41.0, tcp(CALLER, 40003, CALLEE, 443, flags=SYN)),  # expired at 1 + 40 s
    ])  # fmt: skip
    assert actions(later) == ["drop", "drop", "accept", "drop", "accept"]
    assert [v.rule for v in later] == ["sni-4", "sni-4", None, "sni-4", None]
    s = p.summary(now=41.0)
    assert s["rules"][0]["drops"] == {"drop": 1, "residual": 3}
    assert s["residual"]["triggered"] == 1 and s["residual"]["active"] == 0
    events = [(ev["event"], ev["t"]) for ev in s["events"]]
    assert events == [("match", 1.0), ("block", 1.0), ("residual", 2.0), ("residual", 3.0), ("residual", 40.9)]


@pytest.mark.parametrize("then", ["drop", "reject"])
def test_block_after_on_reject_rewrite_starts_at_the_rewrite_not_the_client_hello(then: str) -> None:
    # SNI-I with its residual block, as docs/policy.md writes it (A.2): the ClientHello only
    # matches (it passes), so the block must not start there and drop the server's reply; the
    # reply is rewritten into RST/ACK, and from then on the server is blocked for new flows.
    p = policy(rules_of("{name: sni-1, match: {sni: blocked.example}, "
                        f"action: {{reject: rewrite, block_after: {{for: 75s, then: {then}}}}}}}"))  # fmt: skip
    e = engine(p)
    ch = tls_record(build_client_hello(sni="blocked.example"))
    pk = handshake(CALLER, 40000, CALLEE, 443)
    pk += [(0.01, tcp(CALLER, 40000, CALLEE, 443, seq=1000, ack=5000, payload=ch)),
           (0.02, tcp(CALLEE, 443, CALLER, 40000, seq=5000, ack=1000 + len(ch), payload=b"\x16\x03\x03" + bytes(90)))]  # fmt: skip
    vs = play(e, pk)
    assert [v.action for v in vs] == [Action.ACCEPT] * 5
    assert vs[3].rewrite is None and vs[4].rewrite is not None and vs[4].rule == "sni-1"
    assert parse_ip(vs[4].rewrite).tcp_flags == TCPFlag.RST | TCPFlag.ACK
    later = play(e, [(1.0, tcp(CALLER, 40001, CALLEE, 443, flags=SYN, seq=2000, ack=0))])[0]
    assert later.rule == "sni-1"
    if then == "drop":
        assert later.action is Action.DROP
    else:
        assert later.action is Action.REJECT and later.reject is RejectKind.TCP_RST
    s = p.summary(now=1.0)
    r = s["rules"][0]
    assert r["rewritten"] == 1 and r["drops"] == {"reject": 1, "residual": 1}
    assert s["residual"]["triggered"] == 1 and s["residual"]["active"] == 1
    events = [(ev["event"], ev["t"]) for ev in s["events"]]
    assert events == [("match", 0.01), ("block", 0.02), ("residual", 1.0)]


@pytest.mark.parametrize(
    ("key", "want"),
    [("3-tuple", ["drop", "accept", "accept"]), ("pair", ["drop", "drop", "accept"]),
     ("server", ["drop", "drop", "drop"])],
)  # fmt: skip
def test_block_after_keys(key: str, want: list[str]) -> None:
    p = policy(rules_of(f"{{name: q, match: {{payload: {{offset: 1, hex: '00000001'}}}}, "
                        f"action: {{drop: true, block_after: {{for: 420s, key: {key}}}}}}}"))  # fmt: skip
    e = engine(p)
    play(e, [(0, udp(CALLER, 1000, CALLEE, 443, b"\xc0\x00\x00\x00\x01" + bytes(1200)))])
    got = play(e, [(1, udp(CALLER, 1001, CALLEE, 443, b"hi")),  # same server address+port
                   (2, udp(CALLER, 1002, CALLEE, 8443, b"hi")),  # same pair of addresses
                   (3, udp(RELAY, 1003, CALLEE, 9, b"hi"))])  # same server, another client  # fmt: skip
    assert actions(got) == want


def test_block_after_then_reject_and_cut_trigger() -> None:
    p = policy(rules_of("{name: freeze, match: {dst: callee}, action: {cut: {after_packets: 2}, "
                        "block_after: {for: 10s, then: reject}}}"))  # fmt: skip
    e = engine(p)
    vs = play(e, [(0, udp(CALLER, 1, CALLEE, 2)), (0.1, udp(CALLER, 1, CALLEE, 2)), (0.2, udp(CALLER, 1, CALLEE, 2))])
    assert actions(vs) == ["accept", "accept", "drop"]
    v = play(e, [(1, udp(CALLER, 9, CALLEE, 2))])[0]
    assert v.action is Action.REJECT and v.reject is RejectKind.ICMP_UNREACHABLE and v.rule == "freeze"


def test_residual_table_is_bounded() -> None:
    p = policy(rules_of("{name: b, match: {dst_port: 443}, action: {drop: true, block_after: {for: 100s}}}",
                        head="policy: {max_residual: 2}\n"))  # fmt: skip
    e = engine(p)
    play(e, [(0, udp(CALLER, 1, f"10.0.9.{i}", 443)) for i in range(1, 4)])
    s = p.summary()
    assert s["residual"] == {"triggered": 3, "entries": 2, "evicted": 1}


# --- determinism, counters, events ------------------------------------------------------------


DETERMINISM = rules_of(
    "{name: lossy, match: {transport: udp}, action: {loss: {model: gilbert-elliott, p: 5%, r: 30%}, "
    "delay: {time: 30ms, jitter: 20ms, distribution: paretonormal}, direction: both}}"
)


def _run(seed: int) -> list[Verdict]:
    pk = stream(3000, dt=0.003, both=True) + stream(1000, dt=0.003, sport=40001)
    pk.sort(key=lambda x: x[0])
    return play(engine(policy(DETERMINISM, seed=seed)), pk)


def test_same_seed_same_verdicts_different_seed_different() -> None:
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)


def test_a_flows_draws_do_not_depend_on_other_flows() -> None:
    alone = play(engine(policy(DETERMINISM, seed=3)), stream(500, dt=0.01))
    mixed_pk = stream(500, dt=0.01) + stream(700, dt=0.007, sport=49999)
    mixed_pk.sort(key=lambda x: x[0])
    e = engine(policy(DETERMINISM, seed=3))
    vs = play(e, mixed_pk)
    mine = [v for v, (_, data) in zip(vs, mixed_pk, strict=True) if parse_ip(data).sport == 40000]
    assert [v.action for v in mine] == [v.action for v in alone]


def test_event_log_is_bounded_and_counts_what_it_left_out() -> None:
    p = policy(rules_of("{name: all, match: {transport: udp}, action: drop}", head="policy: {max_events: 3}\n"))
    play(engine(p), [(i, udp(CALLER, 1000 + i, CALLEE, 2)) for i in range(10)])
    s = p.summary()
    assert len(s["events"]) == 3 and s["events_dropped"] == 7
    assert s["events"][0] == {
        "t": 0.0, "event": "match", "rule": "all", "flow": f"{CALLER}:1000 <-> {CALLEE}:2",
        "transport": "udp", "direction": "original", "packet": 1, "labels": [], "sni": None,
        "endpoints": [f"{CALLER}:1000", f"{CALLEE}:2"],  # added with the CensorEvent record
    }  # fmt: skip
    assert s["rules"][0]["matched_flows"] == 10


def test_flow_record_names_the_deciding_rule() -> None:
    p = policy(rules_of("{name: d, match: {packet_index: {min: 2}}, action: drop}"))
    e = engine(p)
    play(e, stream(3))
    flow = next(iter(e.classifier.flows()))
    assert p.flow_record(flow) == {"rule": "d", "rules": {"d": 2}, "settled": False, "held": 0}


def test_expired_bounds_prune_rules_and_settle_the_flow() -> None:
    p = policy(rules_of("{name: first-3, match: {packet_index: {max: 3}}, action: {delay: 10ms}}"))
    e = engine(p)
    vs = play(e, stream(6, dt=0.1))
    assert actions(vs) == ["hold"] * 3 + ["accept"] * 3
    flow = next(iter(e.classifier.flows()))
    assert p.is_settled(flow)


def test_held_packets_are_bounded_and_counted() -> None:
    p = policy(rules_of("{name: d, action: {delay: 1s}}", head="policy: {max_held: 10}\n"))
    vs = play(engine(p), stream(15, dt=0.01) + [(1.2, udp(CALLER, 40000, CALLEE, 5000))])
    assert actions(vs) == ["hold"] * 10 + ["drop"] * 5 + ["hold"]
    s = p.summary()
    assert s["rules"][0]["drops"] == {"queue-full": 5}
    assert s["held"]["peak"] == 10


def test_queue_sizing_estimate() -> None:
    from test_policy_support import ir

    from testbed.core.policy import estimate_max_hold

    s = ir(rules_of("{name: a, action: {delay: {time: 100ms, jitter: 10ms, distribution: normal}}}",
                      "{name: b, action: {throttle: {rate: 80kbit, mode: shape, backlog: 20KB}}}"))  # fmt: skip
    assert estimate_max_hold(s) == pytest.approx(2.0)  # 20 KB at 10 KB/s


def test_twitter_throttle_default_burst_reproduces_the_measured_pattern() -> None:
    # B.8: ~16 KB delivered at once (a bucket of one second of 130 kbit/s), then the excess is
    # dropped and the flow gets one packet's worth of tokens every ~62 ms.
    p = policy(rules_of("{name: tw, action: {throttle: {rate: 130kbit}, direction: both}}"))
    pk = stream(2000, dt=0.001, size=1000)  # 1 MB/s offered for 2 s
    vs = play(engine(p), pk)
    passed = [t for v, (t, _) in zip(vs, pk, strict=True) if v.action is Action.ACCEPT]
    assert 16 <= sum(t < 0.1 for t in passed) <= 18
    assert len(passed) == pytest.approx(16 + 2 * 16.25, abs=2)
    gaps = [b - a_ for a_, b in pairwise(passed[20:])]
    assert statistics.mean(gaps) == pytest.approx(1000 / 16_250, rel=0.05)


def test_the_engine_summary_merges_the_policy_without_clobbering_its_keys() -> None:
    p = policy(rules_of("{name: d, match: {dst_port: 9}, action: drop}"))
    e = engine(p)
    play(e, [(0, udp(CALLER, 1, CALLEE, 9)), (0, udp(CALLER, 2, CALLEE, 10))])
    s = e.summary()
    assert isinstance(s["flows"], list) and len(s["flows"]) == 2
    assert s["rules"][0]["name"] == "d" and s["rules"][0]["dropped"] == 1
    assert s["flows_evaluated"] == 2 and s["events"][0]["rule"] == "d"


def test_bytes_in_a_dtls_client_hello_from_the_packet() -> None:
    # The classifier keeps hellos; with keep_hellos off the matcher reads the datagram itself.
    from _dpi_helpers import build_client_hello

    from testbed.core.classify import Classifier
    from testbed.core.engine import CensorEngine

    hs = build_client_hello(sni=None, dtls=True)
    body = hs[4:]
    dtls_hs = hs[:1] + hs[1:4] + b"\x00\x00" + b"\x00\x00\x00" + hs[1:4] + body
    record = b"\x16\xfe\xfd" + bytes(8) + len(dtls_hs).to_bytes(2, "big") + dtls_hs
    p = policy(rules_of("{name: pion, match: {payload: {in: client_hello, offset: 0, hex: 'fefd'}}, action: drop}"))
    e = CensorEngine(Classifier(keep_hellos=False), p)
    v = e.handle(udp(CALLER, 5000, CALLEE, 6000, record), 0.0)
    assert (v.action, v.rule) == (Action.DROP, "pion")


def test_reject_tcp_over_ipv6_sends_rst_ack_to_both_ends() -> None:
    p = policy(rules_of("{name: rst, match: {family: v6, dst_port: 443}, action: reject}"))
    pk = tcp(CALLER6, 40000, CALLEE6, 443, flags=PSHACK, seq=1000, ack=5000, payload=b"abc")
    v = play(engine(p), [(0, pk)])[0]
    assert v.action is Action.REJECT and v.reject is RejectKind.TCP_RST
    to_client, to_server = (parse_ip(x) for x in v.inject)
    assert to_client.version == to_server.version == 6
    assert (to_client.src, to_client.dst, to_client.tcp_seq, to_client.tcp_ack) == (a(CALLEE6), a(CALLER6), 5000, 1003)
    assert (to_server.src, to_server.dst, to_server.tcp_seq, to_server.tcp_ack) == (a(CALLER6), a(CALLEE6), 1003, 5000)
    assert to_client.tcp_flags == to_server.tcp_flags == TCPFlag.RST | TCPFlag.ACK
